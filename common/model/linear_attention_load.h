// Rebuilding a converted model: reads the `linear_attention` section of a
// Hugging Face directory's config.json and the student tensors from its
// safetensors, and swaps the converted layers' attention in.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/model/linear_attention_config.h"
#include "common/model/llama_model.h"

namespace linearize::model {

// std::nullopt (model untouched) when config.json has no linear_attention
// section. Student tensors are read as fp32 onto the model's device. Errors
// name the file and the section field or tensor at fault.
absl::StatusOr<std::optional<LinearAttentionConfig>> ApplyLinearAttentionFromDir(
    const std::string& dir, LlamaModel* model);

}  // namespace linearize::model
