// Loads ModelWeights from a GGUF file (llama.cpp's format), dequantizing
// every tensor and undoing llama.cpp's conversion-time changes.
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "common/io/gguf.h"
#include "common/io/model_config.h"
#include "common/model/weights.h"

namespace linearize::model {

// Maps blk.N.attn_q.weight etc. to the model's parameters, dequantizes to
// float32 (then options.dtype), reverses ggml's dimension order to row-major
// and, for the llama architecture, undoes the Q/K row permutation that
// llama.cpp's convert script applies (as transformers' GGUF loader does).
// A missing output.weight means tied embeddings. Errors name the file, the
// tensor and the expected and actual shape or type. With `layers`, only
// those decoder layers are dequantized (see ModelWeights::only_layers);
// INVALID_ARGUMENT for a range outside the model.
absl::StatusOr<ModelWeights> LoadGgufWeights(
    const io::GgufFile& gguf, const io::ModelConfig& config, const WeightOptions& options,
    const std::optional<LayerRange>& layers = std::nullopt);

// llama.cpp stores q/k rows of each head interleaved (pairs (i, i+D/2)
// adjacent); this restores the Hugging Face order. `rows` = heads * D.
at::Tensor UnpermuteQk(const at::Tensor& w, int64_t heads);

}  // namespace linearize::model
