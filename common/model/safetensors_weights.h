// Loads ModelWeights from a Hugging Face checkpoint directory
// (model.safetensors or shards with model.safetensors.index.json).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "common/io/safetensors.h"
#include "common/model/weights.h"

namespace linearize::model {

// Reads every tensor `config` needs, converting F32/F16/BF16 (and F64) to
// options.dtype. Errors name the file, the tensor, and the expected and
// actual shape or dtype; a checkpoint with more layers than the config is an
// error too. With `layers`, only those decoder layers are read (see
// ModelWeights::only_layers); INVALID_ARGUMENT for a range outside the model.
absl::StatusOr<ModelWeights> LoadSafetensorsWeights(
    const std::string& dir, const io::ModelConfig& config, const WeightOptions& options,
    const std::optional<LayerRange>& layers = std::nullopt);

// One stored floating-point tensor (F64/F32/F16/BF16), copied out of the
// mapping and converted to options.dtype on options.device.
absl::StatusOr<at::Tensor> TensorFromView(const io::TensorView& view,
                                          const WeightOptions& options);

}  // namespace linearize::model
