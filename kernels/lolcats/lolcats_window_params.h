// The plain struct the sliding-window CUDA kernel of both hybrids sees
// (lolcats_window_cuda.cu), no LibTorch types. For query i (0-based), window
// keys j in [max(0, i - W + 1), i], s_ij = q_i . k_j * scale, c_i = their max
// (and the sinks'):
//   LoLCATs (sinks == nullptr): one shared normaliser,
//     y_i = (g sum_win exp(s_ij - c_i) v_j + lin_num_i) / (g sum_win exp(s_ij - c_i) + lin_den_i)
//     with lin_num / lin_den the linear part over keys j <= i - W (the
//     chunked kernel with key_delay = W);
//   Lizard (sinks != nullptr): each branch normalised on its own,
//     y_i = lin_num_i / (lin_den_i + eps)
//         + alpha_h sum_win exp(s_ij - c_i) v_j / (sum_win exp(s_ij - c_i) + sum_m exp(l_m - c_i))
//     with lin_num / lin_den the gated branch over keys j <= i, or with
//     lin_normalised, lin_num = that branch's finished output (training):
//     y_i = lin_num_i + alpha_h (the window branch)_i.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct LolcatsWindowParams {
  const void* q = nullptr;         // [B, H, T, D] contiguous, element type `type`
  const void* k = nullptr;         // [B, Hkv, T, D]; query head h reads h / (H / Hkv)
  const void* v = nullptr;         // [B, Hkv, T, D]
  const float* gate = nullptr;     // [H] g = sigmoid(window logit); LoLCATs only
  const float* sinks = nullptr;    // [H, M] Lizard's meta-memory logits l_m, or null (LoLCATs)
  int64_t sink_count = 0;          // M, 0..8
  const float* alpha = nullptr;    // [H] Lizard's window-branch weight
  float eps = 0.f;                 // Lizard: added to the gated branch's denominator
  const void* lin_num = nullptr;   // [B, H, T, D] float32 or bf16, or null (no linear terms)
  bool lin_num_bf16 = false;       // lin_num is bfloat16
  bool lin_normalised = false;     // Lizard: lin_num is the gated branch's output; no lin_den
  const float* lin_den = nullptr;  // [B, H, T] float32, or null
  void* y = nullptr;               // [B, H, T, D], element type `type`
  // Optional, LoLCATs only: the shared normaliser of each row,
  // g sum_win exp(s_ij - c_i) + lin_den_i, [B, H, T] (the backward needs it).
  float* row_den = nullptr;
  // Optional, Lizard only: the window branch alone (before alpha),
  // [B, H, T, D] of element type `type` (the backward reads it).
  void* y_window = nullptr;
  int64_t batch = 0, heads = 0, kv_heads = 0, length = 0;
  int64_t head_dim = 0;                   // 64 or 128
  int64_t window = 64;                    // 1..64, or up to 128 for Lizard in bf16
  float scale = 1.f;                      // 1 / sqrt(D)
  ElementType type = ElementType::kBF16;  // kF32 or kBF16
  // bf16 with the 128-key band (W <= 64): consecutive 64-query chunks one
  // CTA takes, reusing the previous chunk's keys and values; 0 plans it
  // from the device's size (tests pin it). The other forms take one.
  int64_t chunks_per_cta = 0;
  void* stream = nullptr;
};

bool LolcatsWindowSupported(const LolcatsWindowParams& params);
// The size and type rules alone, before the pointers are set: `lizard` picks
// Lizard's (sinks) rules over LoLCATs'.
bool LolcatsWindowSizesSupported(const LolcatsWindowParams& params, bool lizard);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchLolcatsWindow(const LolcatsWindowParams& params);

}  // namespace linearize::kernels
