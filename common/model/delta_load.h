// A converted model shipped as a delta over its teacher: a directory whose
// config.json has a `linearize_delta` section naming the base model
//   "linearize_delta": {"base_model": "SmolLM2-135M-Instruct.Q4_1.gguf",
//                       "base_sha256": "sha256:..."}
// beside the linear_attention section, with model.safetensors holding only
// the student attention tensors and the LoRA as a PEFT adapter
// (adapter_config.json + adapter_model.safetensors). Loading rebuilds the
// student: the base's weights with the LoRA merged into its projections and
// the converted layers' attention swapped in. A few MB instead of the model.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/model/load.h"
#include "nlohmann/json.hpp"

namespace linearize::model {

// `section` is config.json's linearize_delta object. The base is looked up
// beside the delta directory, then in the embedded default model's folder;
// NOT_FOUND names the places tried, FAILED_PRECONDITION a base whose SHA-256
// differs from base_sha256; INVALID_ARGUMENT names a malformed field, file
// or tensor.
absl::StatusOr<LoadedModel> LoadDelta(const std::string& dir, const nlohmann::json& section,
                                      const LoadOptions& options);

// FAILED_PRECONDITION unless the file `base` hashes to `want` (a
// linearize_delta.base_sha256 label, "sha256:<hex>"); OK when `want` is
// empty. The message starts with `what` (e.g. "the delta <dir>").
absl::Status CheckDeltaBase(const std::string& what, const std::string& base,
                            const std::string& want);

}  // namespace linearize::model
