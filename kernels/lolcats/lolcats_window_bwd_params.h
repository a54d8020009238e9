// The plain struct the LoLCATs window backward kernels see
// (lolcats_window_bwd_cuda.cu), no LibTorch types. Forward (lolcats_window_params.h):
//   y_i = (g sum_win a'_ij v_j + lin_num_i) / Z_i,  a'_ij = exp(s_ij - c_i),
//   Z_i = g sum_win a'_ij + lin_den_i,  s_ij = scale q_i . k_j,  c_i = max_win s_ij.
// Given dN_i = dy_i / Z_i, dZ_i = -(dy_i . y_i) / Z_i (also the linear
// part's gradients) and dc_i (see below), all computed by the caller, with
// a_ij = g a'_ij:
//   t_ij  = a_ij (dN_i . v_j + dZ_i)
//   ds_ij = t_ij + [j = argmax_i] dc_i   (c's gradient goes to the first j
//           with s_ij = c_i, the max's subgradient; amax would split it
//           between exact ties)
//   d_q_i = scale sum_j ds_ij k_j,   d_k_j = scale sum_i ds_ij q_i,
//   d_v_j = sum_i a_ij dN_i.
// dc_i = -sum_j t_ij, which equals dN_i . lin_num_i + dZ_i lin_den_i; the
// caller forms it (and d_g = -sum_i dc_i / g) that way in float32, because
// the sum over t cancels.
#pragma once

#include <cstdint>

namespace linearize::kernels {

struct LolcatsWindowBwdParams {
  // Inputs: bf16 q [B, H, T, D], k, v [B, Hkv, T, D], dN [B, H, T, D]; float32
  // d_den dZ [B, H, T], dc [B, H, T], gate g [H].
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* d_num = nullptr;
  const float* d_den = nullptr;
  const float* dc = nullptr;
  const float* gate = nullptr;
  int64_t batch = 0, heads = 0, kv_heads = 0, length = 0;
  int64_t head_dim = 0;  // 64 or 128
  int64_t window = 64;   // 1..64
  float scale = 1.f;
  // Outputs, float32, per query head: d_q, d_k, d_v [B, H, T, D]. Scratch:
  // row_max c [B, H, T] float32 and argmax [B, H, T] int32 (written by the
  // first kernel, read by the second).
  float* d_q = nullptr;
  float* d_k = nullptr;
  float* d_v = nullptr;
  float* row_max = nullptr;
  int* argmax = nullptr;
  void* stream = nullptr;
};

// Whether the kernels cover these sizes (pointers are checked at launch).
bool LolcatsWindowBwdSupported(const LolcatsWindowBwdParams& params);

// Launches both kernels; returns the launch error string, or nullptr.
const char* LaunchLolcatsWindowBwd(const LolcatsWindowBwdParams& params);

}  // namespace linearize::kernels
