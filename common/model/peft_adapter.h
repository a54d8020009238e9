// Reading a LoRA kept apart as a PEFT adapter directory (adapter_config.json:
// r, lora_alpha, target_modules; adapter_model.safetensors: the A and B of
// each target projection of each layer, PEFT's tensor names).
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/model/lora.h"

namespace linearize::model {

// The adapter in `dir` for a model of `layers` layers, float32 on `device`;
// INVALID_ARGUMENT names the file and the field or tensor at fault.
absl::StatusOr<LoraAdapters> ReadPeftAdapter(const std::string& dir, int64_t layers,
                                             c10::Device device);

}  // namespace linearize::model
