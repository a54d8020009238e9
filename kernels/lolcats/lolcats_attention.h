// LoLCATs hybrid attention (Zhang et al. 2024): exact softmax over a window of
// recent keys plus linear attention over all older keys, one shared
// normaliser. For query i (0-based), with s_ij = q_i . k_j / sqrt(D):
//
//   window(i) = { j : Start(i) <= j <= i }       linear(i) = { j : j < Start(i) }
//     sliding (default): Start(i) = max(0, i - W + 1)   -> the last W keys, i included
//     terrace:           Start(i) = max(0, (floor(i/W) - 1) W) -> own W-block + previous
//   c_i = max_{j in window(i)} s_ij                 (depends on q, k; gradients flow)
//   g   = sigmoid(w_h)                              (w = raw window logit per query head)
//   a_ij = g exp(s_ij - c_i)                        for j in window(i)
//   y_i = (sum_{window} a_ij v_j + phi(q_i) S_i) / (sum_{window} a_ij + phi(q_i) . z_i)
//   S_i = sum_{j in linear(i)} phi(k_j) v_j^T,  z_i = sum_{j in linear(i)} phi(k_j)
//
// This is DESIGN.md's formula and the LoLCATs reference code
// (hybrid_attention_quadratic in linear_window_attention_sw.py / _tk.py):
// only the softmax terms carry exp(-c); the linear terms are unscaled, so c is
// part of the definition (the result is not shift-invariant) and every
// implementation must use exactly the window max above. There is no eps: the
// window always holds j = i and its maximum term is g exp(0) = g > 0.
// Terrace blocks are aligned to position 0 (the reference aligns its blocks to
// the end of the sequence when T is not a multiple of W; that is not causal, so
// it could not match a recurrent decode).
//
// Shapes: q [B, Hq, T, D], k, v [B, Hkv, T, D] (after RoPE), Hq a multiple of
// Hkv (query head h reads kv head h / (Hq / Hkv)). Float64 inputs compute in
// float64, others in float32; outputs come back in q's dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kernels/feature_map/feature_map.h"

namespace linearize::kernels::lolcats {

enum class WindowKind { kSliding, kTerrace };

struct Options {
  int64_t window = 64;  // W
  WindowKind window_kind = WindowKind::kSliding;
  int64_t chunk = 64;  // chunk size of the parallel form
};

struct Weights {
  FeatureMaps maps;         // hedgehog q/k maps (elu+1 also accepted)
  at::Tensor window_logit;  // [Hq] raw w; g = sigmoid(w) (LoLCATs initialises g at 0.1)
};

// Recurrent state of one layer: fixed size, independent of T. Rows may sit at
// different positions (batched decode of unrelated sequences); rows can be
// joined or split with at::cat / narrow on every field along dim 0. Not
// thread-safe: one DecodeStep at a time per state.
struct State {
  at::Tensor kv;        // [B, Hq, F, D] sum phi(k) v^T over keys that left the window
  at::Tensor k_sum;     // [B, Hq, F]    sum phi(k) over the same keys
  at::Tensor k_window;  // [B, Hkv, Wb, D] raw keys, position p in slot p % Wb,
  at::Tensor v_window;  // [B, Hkv, Wb, D] Wb = W (sliding) or 2W (terrace); input dtype
  at::Tensor position;  // [B] int64: tokens consumed per row (the next token's position)
};

// Slots of the ring buffer: W (sliding) or 2W (terrace).
int64_t WindowSlots(const Options& options);

// The entry point: checks, then the chunked LibTorch form (CPU; differentiable,
// memory O(T (C + W))). CUDA kernels dispatch from here.
at::Tensor ForwardParallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const Weights& weights, const Options& options = {});

// Ground truth: materialises the [T, T] score matrix.
at::Tensor ForwardReference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const Weights& weights, const Options& options = {});

// That matrix normalised, [B, Hq, T, T] in the compute dtype
// (differentiable): row i holds query i's weights, window and linear part
// under the shared normaliser, summing to 1; ForwardReference is
// AttentionWeights times v. Checks as ForwardReference.
at::Tensor AttentionWeights(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const Weights& weights, const Options& options = {});

// Parallel forward over a prompt plus the state that T DecodeStep calls would
// leave (y keeps its autograd graph; the state is detached).
//  initial == nullptr, or at position 0: the prompt starts a sequence.
//  otherwise: the prompt continues the sequence `*initial` holds (a state
//    Prefill or DecodeStep left, every row at one position P; not modified),
//    tokens at positions P .. P + T - 1. The keys not yet in kv / k_sum are
//    positions [Start(P - 1), P), all still in the ring (for terrace
//    Start(P - 1) is a multiple of W: DecodeStep moves whole W-blocks); the
//    chunked form runs over them followed by the prompt, every query adds
//    phi(q) kv and phi(q) . k_sum to its linear terms, and only the prompt's
//    rows are kept. Equal to T DecodeSteps from *initial, and to one Prefill
//    over the whole sequence. On CUDA the kernels run it for sliding
//    windows (the chunked kernel from kv / k_sum), elsewhere LibTorch; rows
//    at different positions are refused.
struct PrefillResult {
  at::Tensor y;
  State state;
};
PrefillResult Prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const Weights& weights, const Options& options = {},
                      const State* initial = nullptr);

// Zero state at position 0. `options` carries the input dtype and device; the
// linear state uses the compute dtype, the ring buffers the input dtype.
State EmptyState(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t feature_dim,
                 int64_t head_dim, const Options& lolcats_options, at::TensorOptions options);

// One token per row: q [B, Hq, 1, D], k, v [B, Hkv, 1, D] -> y [B, Hq, 1, D].
// Moves the keys that leave the window into the linear state, writes k, v into
// the ring buffer, attends, advances position. Inference only (no autograd).
at::Tensor DecodeStep(State& state, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const Weights& weights, const Options& options = {});

}  // namespace linearize::kernels::lolcats
