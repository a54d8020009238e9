// The plain struct the window backward kernels of both hybrids see
// (lolcats_window_bwd_cuda.cu), no LibTorch types. Forward
// (lolcats_window_params.h), with a'_ij = exp(s_ij - c_i), s_ij = scale q_i . k_j:
//   LoLCATs: y_i = (g sum_win a'_ij v_j + lin_num_i) / Z_i,
//            Z_i = g sum_win a'_ij + lin_den_i,  c_i = max_win s_ij;
//   Lizard's window branch: y_i = sum_win a'_ij v_j / Z_i,
//            Z_i = sum_win a'_ij + sum_m exp(l_m - c_i),  c_i = max(max_win s_ij, max_m l_m).
// Given dN_i = dy_i / Z_i, dZ_i = -(dy_i . y_i) / Z_i (also the linear
// part's gradients) and dc_i (see below), all computed by the caller, with
// a_ij = g a'_ij (g = 1 for Lizard):
//   t_ij  = a_ij (dN_i . v_j + dZ_i)
//   ds_ij = t_ij + [j = argmax_i] dc_i   (c's gradient goes to the first j
//           with s_ij = c_i, the max's subgradient; amax would split it
//           between exact ties)
//   d_q_i = scale sum_j ds_ij k_j,   d_k_j = scale sum_i ds_ij q_i,
//   d_v_j = sum_i a_ij dN_i.
// LoLCATs: dc_i = -sum_j t_ij, which equals dN_i . lin_num_i + dZ_i lin_den_i;
// the caller forms it (and d_g = -sum_i dc_i / g) that way in float32,
// because the sum over t cancels. Lizard: y does not depend on c_i (it
// cancels between the weights and Z), so dc = 0; the sinks' gradient is
// d l_m = sum_i dZ_i exp(l_m - c_i), which the caller forms from row_max.
#pragma once

#include <cstdint>

namespace linearize::kernels {

// The fold's (below) Hedgehog half-features Fh: LoLCATs' fused step's.
constexpr int kWindowFoldHalfFeatures = 64;

// One Hedgehog map's part of the fold: its logits' gradient dl [B, H, T, Fh]
// and W_h^T [H, Fh, D], both bf16.
struct WindowFoldMap {
  const void* dl = nullptr;
  const void* weight_t = nullptr;
};

struct LolcatsWindowBwdParams {
  // Inputs: bf16 q [B, H, T, D], k, v [B, Hkv, T, D], dN [B, H, T, D]; float32
  // d_den dZ [B, H, T].
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* d_num = nullptr;
  const float* d_den = nullptr;
  // LoLCATs: dc [B, H, T] and the gate g [H]. Lizard: both null (dc = 0, g = 1).
  const float* dc = nullptr;
  const float* gate = nullptr;
  // Lizard: the sink logits [H, M], which enter c_i; null for LoLCATs.
  const float* sinks = nullptr;
  int64_t sink_count = 0;  // M, 1..8 with sinks
  int64_t batch = 0, heads = 0, kv_heads = 0, length = 0;
  int64_t head_dim = 0;  // 64 or 128
  int64_t window = 64;   // 1..128
  float scale = 1.f;
  // Outputs, per query head: d_q, d_k, d_v [B, H, T, D], float32, or bf16
  // where the flag says (the caller's autograd wants bf16 and no head sum
  // follows: a float32 copy would only be cast), and c_i (row_max [B, H, T],
  // float32), which the second kernel reads and Lizard's caller uses.
  // Scratch: argmax [B, H, T] int32 (LoLCATs only; null for Lizard).
  void* d_q = nullptr;
  void* d_k = nullptr;
  void* d_v = nullptr;
  bool d_q_bf16 = false;
  bool d_kv_bf16 = false;  // d_k and d_v
  float* row_max = nullptr;
  int* argmax = nullptr;
  // LoLCATs' fold of the Hedgehog maps' input gradients (heads = kv_heads,
  // D = 128, Fh = 64, window <= 64; LolcatsWindowBwdFoldUnsupported): with
  // q_map and k_map set, d_q and d_k hold q's and k's whole gradients,
  // window + dl W_h^T, and d_v adds d_v_add (bf16 [B, H, T, D]: the linear
  // part's d_v), so no kernel reads the window's gradients back to add them.
  WindowFoldMap q_map, k_map;
  const void* d_v_add = nullptr;
  void* stream = nullptr;
};

// Whether the kernels cover these sizes (pointers are checked at launch).
bool LolcatsWindowBwdSupported(const LolcatsWindowBwdParams& params);

// Whether the fold covers these sizes (null when it does, else the reason).
const char* LolcatsWindowBwdFoldUnsupported(const LolcatsWindowBwdParams& params);

// Launches both kernels; returns the launch error string, or nullptr.
const char* LaunchLolcatsWindowBwd(const LolcatsWindowBwdParams& params);

}  // namespace linearize::kernels
