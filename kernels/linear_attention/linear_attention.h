// Plain causal linear attention, the baseline (no window, no gate):
//   y_i = phi(q_i)^T S_i / (phi(q_i)^T z_i + eps),
//   S_i = sum_{j<=i} phi(k_j) v_j^T,  z_i = sum_{j<=i} phi(k_j).
// No 1/sqrt(D) scaling (it would cancel). eps (default 1e-6) only guards a
// denominator that underflows; phi > 0 keeps it positive otherwise.
// Shapes: q [B, Hq, T, D]; k, v [B, Hkv, T, D], Hq a multiple of Hkv (query
// head h reads kv head h / (Hq / Hkv)). phi is FeatureMaps (elu+1 for the
// baseline; hedgehog also works). Float64 inputs compute in float64, others
// in float32; outputs come back in q's dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kernels/feature_map/feature_map.h"

namespace linearize::kernels::linear_attention {

struct Options {
  int64_t chunk = 64;  // chunk size of the parallel form (any T works)
  double eps = 1e-6;   // added to every denominator
};

// Recurrent state of one layer: fixed size, independent of T. Not thread-safe:
// one DecodeStep at a time per state.
struct State {
  at::Tensor kv;     // [B, Hq, F, D] sum phi(k) v^T, compute dtype
  at::Tensor k_sum;  // [B, Hq, F]    sum phi(k)
};

// The entry point: checks, then the chunked LibTorch form (CPU; differentiable,
// O(T) memory). CUDA kernels dispatch from here.
at::Tensor ForwardParallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const FeatureMaps& maps, const Options& options = {});

// Ground truth: materialises the [T, T] attention matrix.
at::Tensor ForwardReference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps, const Options& options = {});

// That matrix, [B, Hq, T, T] in the compute dtype (differentiable): row i
// holds query i's weights over keys j <= i, summing to 1 (up to eps);
// ForwardReference is AttentionWeights times v. Checks as ForwardReference.
at::Tensor AttentionWeights(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps, const Options& options = {});

// Parallel forward over a prompt plus the state that T DecodeStep calls would
// leave (y keeps its autograd graph; the state is detached).
//  initial == nullptr: the prompt starts a sequence (from EmptyState).
//  initial != nullptr: the prompt continues the sequence `*initial` holds (a
//    state Prefill or DecodeStep left; not modified): y_i reads
//    phi(q_i) (S0 + S_i) / (phi(q_i) . (z0 + z_i) + eps) and the new state is
//    S0 + S_T, z0 + z_T, as T DecodeSteps from *initial give. On CUDA the
//    chunked kernel starts from S0, z0; elsewhere LibTorch.
struct PrefillResult {
  at::Tensor y;
  State state;
};
PrefillResult Prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const FeatureMaps& maps, const Options& options = {},
                      const State* initial = nullptr);

// Zero state for `batch` rows; dtype is the compute dtype (float32 / float64).
State EmptyState(int64_t batch, int64_t q_heads, int64_t feature_dim, int64_t head_dim,
                 at::TensorOptions options);

// One token: q [B, Hq, 1, D], k, v [B, Hkv, 1, D] -> y [B, Hq, 1, D]; updates
// `state` in place. Inference only (runs without autograd).
at::Tensor DecodeStep(State& state, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const FeatureMaps& maps, const Options& options = {});

}  // namespace linearize::kernels::linear_attention
