// Models for the GPU tests: the scaled Llama 3 fixture loaded on CUDA, its
// attention converted to a recipe with fixed initial tensors, random ids.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "common/model/linear_attention_config.h"
#include "common/model/load.h"
#include "common/model/student_attention.h"

namespace linearize::model {

inline const std::string kTeacher = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled";

inline LoadedModel LoadOnCuda(at::ScalarType dtype) {
  LoadOptions o;
  o.weights = WeightOptions{dtype, c10::Device(c10::kCUDA)};
  absl::StatusOr<LoadedModel> loaded = LoadModel(kTeacher, o);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return *std::move(loaded);
}

inline void Convert(LlamaModel& m, const LinearAttentionConfig& c) {
  for (int64_t l = 0; l < m.num_layers(); ++l) {
    StudentTensors t = InitStudentTensors(c, m.config(), l, 7);
    for (auto& [name, tensor] : t) tensor = tensor.to(at::kCUDA);
    auto a = MakeStudentAttention(c, m.config(), std::move(t));
    ASSERT_TRUE(a.ok()) << a.status();
    m.SetAttention(l, *std::move(a));
  }
}

inline at::Tensor RandomIds(int64_t vocab, int64_t b, int64_t t, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(vocab, {b, t}, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA);
}

}  // namespace linearize::model
