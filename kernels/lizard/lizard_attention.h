// Lizard hybrid attention (Van Nguyen et al. 2025): gated linear attention for
// global context plus sliding-window softmax with learned "meta-memory" sinks,
// each normalised on its own, summed. For query i (0-based):
//
//   gated:  S_i = gamma_i S_{i-1} + phi(k_i) v_i^T,  z_i = gamma_i z_{i-1} + phi(k_i)
//           (gamma_i = exp(log_gamma_i), log_gamma <= 0, per token and head)
//           y_gla_i = phi(q_i)^T S_i / (phi(q_i) . z_i + eps)
//   window: j in [max(0, i - W + 1), i], s_ij = qw_i . kw_j / sqrt(D),
//           l_1..l_M = the head's meta-memory logits (sinks without values),
//           c = max(max_j s_ij, max_m l_m)   (stability only; softmax is
//           shift-invariant, so c is detached)
//           y_win_i = sum_j exp(s_ij - c) v_j / (sum_j exp(s_ij - c) + sum_m exp(l_m - c))
//   y_i = y_gla_i + alpha_h y_win_i
//
// The gated branch's chunked form keeps every exponent <= 0 (decays relative
// to the chunk: exp(b_i - b_j), exp(b_i), exp(b_last - b_j), b the in-chunk
// cumsum of log_gamma; see kernels/linear_attention/chunked_linear.h), so
// log_gamma ~ -20 or below underflows to 0 instead of overflowing.
//
// Shapes: q, qw [B, Hq, T, D]; k, kw, v [B, Hkv, T, D], Hq a multiple of Hkv
// (query head h reads kv head h / (Hq / Hkv)); log_gamma [B, Hq, T] or
// [B, Hkv, T]. Float64 inputs compute in float64, others in float32; outputs
// come back in q's dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kernels/feature_map/feature_map.h"

namespace linearize::kernels::lizard {

struct Options {
  int64_t window = 128;  // W
  int64_t chunk = 64;    // chunk size of the parallel form
  double eps = 1e-6;     // added to the gated branch's denominator
};

struct Weights {
  FeatureMaps maps;        // hedgehog q/k maps for the gated branch
  at::Tensor meta_logits;  // [Hq, M] sink logits (M = 4 in Lizard; M = 0 allowed)
  at::Tensor alpha;        // [Hq] weight of the window branch
};

// Lizard applies RoPE to the window branch only, so that branch may take its
// own q/k; left undefined, it uses q and k.
struct Inputs {
  at::Tensor q, k, v;    // gated-branch q/k; v is shared
  at::Tensor log_gamma;  // [B, Hq or Hkv, T], <= 0
  at::Tensor q_window;   // optional [B, Hq, T, D]
  at::Tensor k_window;   // optional [B, Hkv, T, D]
};

// Recurrent state of one layer: fixed size, independent of T. Rows may sit at
// different positions; rows can be joined or split with at::cat / narrow on
// every field along dim 0. Not thread-safe: one DecodeStep at a time per state.
struct State {
  at::Tensor kv;        // [B, Hq, F, D] gated sum of phi(k) v^T, compute dtype
  at::Tensor k_sum;     // [B, Hq, F]    gated sum of phi(k)
  at::Tensor k_window;  // [B, Hkv, W, D] window-branch keys, position p in slot p % W
  at::Tensor v_window;  // [B, Hkv, W, D] values; input dtype
  at::Tensor position;  // [B] int64: tokens consumed per row
};

// The entry point: checks, then the chunked LibTorch form (CPU; differentiable,
// memory O(T (C + W))). CUDA kernels dispatch from here.
at::Tensor ForwardParallel(const Inputs& in, const Weights& weights, const Options& options = {});

// Ground truth: materialises the [T, T] matrices of both branches.
at::Tensor ForwardReference(const Inputs& in, const Weights& weights, const Options& options = {});

// The two branches' matrices as one, [B, Hq, T, T] in the compute dtype
// (differentiable): the gated branch's normalised weights plus alpha times
// the window branch's (whose rows leave the sinks' share out), so row i sums
// to about 1 + alpha_h; ForwardReference is AttentionWeights times v.
at::Tensor AttentionWeights(const Inputs& in, const Weights& weights, const Options& options = {});

// Parallel forward over a prompt plus the state that T DecodeStep calls would
// leave (y keeps its autograd graph; the state is detached).
//  initial == nullptr, or at position 0: the prompt starts a sequence.
//  otherwise: the prompt continues the sequence `*initial` holds (a state
//    Prefill or DecodeStep left, every row at one position P; not modified),
//    tokens at positions P .. P + T - 1: the gated branch starts from kv /
//    k_sum (query i reads it decayed by the gates of P .. i), the window
//    branch runs over the ring's keys of positions max(0, P - W + 1) .. P - 1
//    followed by the prompt. Equal to T DecodeSteps from *initial, and to one
//    Prefill over the whole sequence. On CUDA the kernels run it (the
//    chunked kernel from kv / k_sum), elsewhere LibTorch; rows at different
//    positions are refused.
struct PrefillResult {
  at::Tensor y;
  State state;
};
PrefillResult Prefill(const Inputs& in, const Weights& weights, const Options& options = {},
                      const State* initial = nullptr);

// Zero state at position 0; `options` carries the input dtype and device.
State EmptyState(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t feature_dim,
                 int64_t head_dim, const Options& lizard_options, at::TensorOptions options);

// One token per row (all Inputs with T = 1) -> y [B, Hq, 1, D]; updates
// `state` in place. Inference only (no autograd).
at::Tensor DecodeStep(State& state, const Inputs& in, const Weights& weights,
                      const Options& options = {});

}  // namespace linearize::kernels::lizard
