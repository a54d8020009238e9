// The parameters of a Llama-family decoder, in the row-major layout of the
// Hugging Face checkpoints ([out, in] for linear layers), and the table that
// maps each one to its checkpoint names and expected shape.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/io/model_config.h"

namespace linearize::model {

struct LayerWeights {
  at::Tensor input_norm;                      // [H]
  at::Tensor q_proj, k_proj, v_proj, o_proj;  // [Hq*D, H], [Hkv*D, H] x2, [H, Hq*D]
  at::Tensor q_bias, k_bias, v_bias, o_bias;  // undefined unless the model has them
  at::Tensor post_norm;                       // [H]
  at::Tensor gate_proj, up_proj;              // [I, H]
  at::Tensor down_proj;                       // [H, I]
};

// Decoder layers [first, first + count) of a model.
struct LayerRange {
  int64_t first = 0;
  int64_t count = 0;
  int64_t end() const { return first + count; }
  bool contains(int64_t layer) const { return layer >= first && layer < end(); }
};

struct ModelWeights {
  at::Tensor embed;       // [V, H]
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;  // [H]
  at::Tensor lm_head;     // [V, H]; the same tensor as embed when tied
  at::Tensor rope_freq_factors;  // [D/2] divisors of the RoPE frequencies (GGUF), or undefined
  // Set when only these decoder layers were loaded (LoadOptions::layers):
  // the other layers' tensors, embed, final_norm and lm_head stay undefined.
  std::optional<LayerRange> only_layers;
};

// How loaded tensors are stored: converted to `dtype` on `device`.
struct WeightOptions {
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
};

// One parameter: its names in HF and GGUF checkpoints, expected row-major
// shape, and where it goes.
struct WeightSpec {
  std::string hf_name;    // "model.layers.0.self_attn.q_proj.weight"
  std::string gguf_name;  // "blk.0.attn_q.weight"
  std::vector<int64_t> shape;
  at::Tensor* slot;
  bool required = true;
  int64_t layer = -1;  // the decoder layer it belongs to; -1: embed, final norm, lm_head
};

// Whether layers have q/k/v biases (Qwen2 always; Llama when attention_bias)
// and an o_proj bias (Llama with attention_bias).
bool HasQkvBias(const io::ModelConfig& config);
bool HasOutputBias(const io::ModelConfig& config);

// The parameters `config` calls for, in checkpoint order, pointing into
// `weights` (whose layers are resized to num_hidden_layers). lm_head is
// listed as not required; the loaders tie it to embed when the config says so.
std::vector<WeightSpec> WeightSpecs(const io::ModelConfig& config, ModelWeights* weights);

// INVALID_ARGUMENT unless `layers` is a non-empty range of the config's layers.
absl::Status ValidateLayerRange(const io::ModelConfig& config, const LayerRange& layers);
// Whether a model loaded with `layers` (nullopt: the whole model) holds the
// tensor of `spec`.
bool HoldsTensor(const std::optional<LayerRange>& layers, const WeightSpec& spec);
// Elements of the distinct tensors `weights` holds (tied embeddings once).
int64_t ParameterCount(const io::ModelConfig& config, const ModelWeights& weights);

// Checks the config's sizes are usable: positive, heads divide, head_dim even.
absl::Status ValidateConfig(const io::ModelConfig& config);
// Checks every tensor the config needs is present with its shape (only those
// of weights.only_layers when set); errors name the tensor, the expected and
// the actual shape.
absl::Status ValidateWeights(const io::ModelConfig& config, const ModelWeights& weights);

// "[64, 32]"
std::string ShapeString(at::IntArrayRef shape);

// The row blocks `parts` (2-D, same column count) as one matrix without a
// copy when they lie back to back in one storage, as q/k/v and gate/up do
// after LlamaModel::FuseProjections; undefined otherwise.
at::Tensor AdjacentRows(std::initializer_list<at::Tensor> parts);

}  // namespace linearize::model
