// Helpers over the two hybrids' decode states (lolcats::State and
// lizard::State: the same fields, kept as two types so that each recipe's API
// names its own state). Internal to kernels/.
#pragma once

#include <ATen/ATen.h>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/sliding_window.h"

namespace linearize::kernels::detail {

// A zeroed state: kv [B, Hq, F, D] and k_sum [B, Hq, F] in the compute dtype
// of `options`, the ring [B, Hkv, slots, D] in its dtype, positions 0.
template <typename State>
State EmptyHybridState(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t feature_dim,
                       int64_t head_dim, int64_t slots, at::TensorOptions options) {
  const at::TensorOptions ct = options.dtype(ComputeType(options.dtype().toScalarType()));
  return State{at::zeros({batch, q_heads, feature_dim, head_dim}, ct),
               at::zeros({batch, q_heads, feature_dim}, ct),
               at::zeros({batch, kv_heads, slots, head_dim}, options),
               at::zeros({batch, kv_heads, slots, head_dim}, options),
               at::zeros({batch}, options.dtype(at::kLong))};
}

// CheckHybridState (sliding_window.h) over a state's fields.
template <typename State>
void CheckHybridState(const char* op, const State& st, const QkvDims& dims, int64_t feature_dim,
                      int64_t slots, const at::Tensor& q) {
  CheckHybridState(op, st.kv, st.k_sum, st.k_window, st.v_window, st.position, dims, feature_dim,
                   slots, q);
}

}  // namespace linearize::kernels::detail
