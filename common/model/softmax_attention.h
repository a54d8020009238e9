// The teacher's attention: exact causal softmax attention with grouped-query
// heads, optionally limited to a sliding window (Mistral), keeping every key
// and value in a KvCache.
#pragma once

#include <cstdint>
#include <optional>

#include "common/model/attention.h"

namespace linearize::model {

class SoftmaxAttention final : public AttentionLayer {
 public:
  // num_heads must be a multiple of num_kv_heads. `sliding_window` N: each
  // query sees itself and the N-1 tokens before it.
  SoftmaxAttention(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                   std::optional<int64_t> sliding_window = std::nullopt);

  std::string_view name() const override { return "softmax"; }
  // Scale 1/sqrt(head_dim). The state, when given, must be a KvCache holding
  // exactly `position` tokens.
  at::Tensor Forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     AttentionState* state, int64_t position) const override;
  std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t capacity,
                                           const at::TensorOptions& options) const override;

 private:
  int64_t num_heads_, num_kv_heads_, head_dim_;
  std::optional<int64_t> sliding_window_;
};

// The softmax attention of q [B, Hq, T, D] over k [B, Hkv, T, D] (the same
// positions, causal, within `sliding_window` when set) as an explicit
// [B, Hq, T, T] float32 matrix: what attention transfer's cross-entropy
// compares a student's weights with. The scores are float32, or bf16 under
// bf16 autocast (as the teacher's own attention computes them there).
// Quadratic in T.
at::Tensor SoftmaxAttentionWeights(const at::Tensor& q, const at::Tensor& k,
                                   std::optional<int64_t> sliding_window = std::nullopt);

}  // namespace linearize::model
