// Rebuilding a converted model: reads the `linear_attention` section of a
// Hugging Face directory's config.json and the student tensors from its
// safetensors, and swaps the converted layers' attention in.
#pragma once

#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/linear_attention_config.h"
#include "common/model/llama_model.h"
#include "common/model/student_attention.h"

namespace linearize::model {

// std::nullopt (model untouched) when config.json has no linear_attention
// section. Student tensors are read as fp32 onto the model's device. Errors
// name the file and the section field or tensor at fault.
absl::StatusOr<std::optional<LinearAttentionConfig>> ApplyLinearAttentionFromDir(
    const std::string& dir, LlamaModel* model);

// Its two steps. The linear_attention section of dir/config.json, checked
// against `model`; std::nullopt when there is none.
absl::StatusOr<std::optional<LinearAttentionConfig>> ReadLinearAttentionConfig(
    const std::string& dir, const io::ModelConfig& model);
// The student tensors of each layer that `config` converts (an empty map for
// the others), float32 on `device`; a missing tensor is INVALID_ARGUMENT.
absl::StatusOr<std::vector<StudentTensors>> ReadStudentTensors(const std::string& dir,
                                                               const LinearAttentionConfig& config,
                                                               const io::ModelConfig& model,
                                                               c10::Device device);

}  // namespace linearize::model
