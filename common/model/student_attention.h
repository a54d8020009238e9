// The converted models' attentions, drop-in AttentionLayers that reuse the
// teacher layer's q/k/v/o projections and own a few trainable tensors:
//   LolcatsAttention  hedgehog maps + window factor (kernels/lolcats)
//   LizardAttention   hedgehog maps + gate W_gamma + meta-memory logits + alpha
//                     (kernels/lizard; gated branch without RoPE)
//   LinearAttention   elu+1, nothing trainable (the baseline; kernels/linear_attention)
// Without a state, Forward runs the differentiable parallel form (training,
// scoring); with one, several tokens take the parallel prefill (from position
// 0, or continuing the state: a prompt fed in chunks gives what one call
// gives) and one token a decode step, so runtime::Generator decodes from a
// fixed-size recurrent state.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "common/model/attention.h"
#include "common/model/linear_attention_config.h"

namespace linearize::model {

// Tensor name (relative to "model.layers.<i>.self_attn.") -> tensor.
using StudentTensors = std::map<std::string, at::Tensor>;

// The tensors a recipe owns per layer with their shapes:
//   lolcats: feature_map_q.weight, feature_map_k.weight [Hq, D, F]; window_factor [Hq]
//   lizard:  feature_map_q.weight, feature_map_k.weight [Hq, D, F];
//            gate_proj.weight [Hq, hidden]; meta_logits [Hq, M]; alpha [Hq]
//   linear:  none
std::vector<std::pair<std::string, std::vector<int64_t>>> StudentTensorShapes(
    const LinearAttentionConfig& config, const io::ModelConfig& model);

// Fresh fp32 tensors, deterministic in (seed, layer): hedgehog maps identity
// plus N(0, 0.01) noise (so the extra columns differ and learn apart),
// window_factor logit(0.1) (g = 0.1), gate_proj N(0, 0.01), meta logits 0,
// alpha 1.
StudentTensors InitStudentTensors(const LinearAttentionConfig& config,
                                  const io::ModelConfig& model, int64_t layer, uint64_t seed);

class StudentAttention : public AttentionLayer {
 public:
  using AttentionLayer::Forward;
  // The trainable tensors (shared with the layer: updating them in place
  // changes its output).
  virtual const StudentTensors& tensors() const = 0;
  // The layer's attention over the tokens of `in` (no earlier state) as an
  // explicit [B, Hq, T, T] matrix, differentiable, in the compute dtype:
  // Forward(in) is this matrix times v (kv heads expanded). Quadratic in T:
  // for attention transfer's cross-entropy and for tests, not for serving.
  virtual at::Tensor AttentionWeights(const AttentionInputs& in) const = 0;
};

// Checks every tensor of StudentTensorShapes is present with its shape
// (errors name it) and builds the layer. Tensors are used as given (not
// copied): set requires_grad on them to train.
absl::StatusOr<std::unique_ptr<StudentAttention>> MakeStudentAttention(
    const LinearAttentionConfig& config, const io::ModelConfig& model, StudentTensors tensors);

}  // namespace linearize::model
