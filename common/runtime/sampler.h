// Choosing the next token from logits: greedy, or sampling with temperature,
// top-k and top-p (in that order, as Hugging Face's warpers apply them).
// Sampling is deterministic for a seed: each Sampler owns its generator.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace linearize::runtime {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy (argmax); else > 0
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the smallest set with this much mass; (0, 1]
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the field: temperature negative or not finite,
// top_k negative, top_p outside (0, 1] or not finite.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Not thread-safe (one request's generator).
class Sampler {
 public:
  static absl::StatusOr<Sampler> Create(const SamplingParams& params);

  bool greedy() const { return params_.temperature == 0.0; }
  const SamplingParams& params() const { return params_; }

  // logits: [V] (any float dtype, any device). Returns the chosen id.
  // INVALID_ARGUMENT for an empty or non-1-D tensor.
  absl::StatusOr<int32_t> Sample(const at::Tensor& logits);

  // The distribution Sample draws from: (id, probability) for every token
  // that survives top-k/top-p, most likely first, probabilities summing to
  // 1. Greedy: the argmax with probability 1.
  std::vector<std::pair<int32_t, double>> Distribution(const at::Tensor& logits) const;

 private:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  std::vector<std::pair<int32_t, double>> Distribution(const std::vector<float>& logits) const;
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace linearize::runtime
