// The plain struct of the window backward's prologue (window_bwd_prologue_cuda.cu),
// no LibTorch types: from the output gradient dy, the output y and the
// normaliser Z of y = N / Z, per row i
//   dN_i = dy_i / Z_i,  dZ_i = -(dy_i . y_i) / Z_i,
// and for LoLCATs (the linear terms given) c's gradient
//   dc_i = dN_i . lin_num_i + dZ_i lin_den_i
// With a per-head scale a_h (Lizard's alpha, the output being a_h y + ...),
// dy is a_h dy in both, and dy_dot_y_i = dy_i . y_i (unscaled) is written for
// a's gradient.
// (lolcats_window_bwd_params.h says why), in one pass over the rows instead
// of a chain of float32 tensor ops.
#pragma once

#include <cstdint>

namespace linearize::kernels {

struct WindowBwdPrologueParams {
  const void* dy = nullptr;  // [rows, D], bfloat16, or float32 with dy_f32
  bool dy_f32 = false;
  const void* y = nullptr;         // [rows, D] bfloat16
  const float* z = nullptr;        // [rows]
  const void* lin_num = nullptr;   // [rows, D] float32 or bf16, LoLCATs; null for Lizard
  bool lin_num_bf16 = false;
  const float* lin_den = nullptr;  // [rows], with lin_num
  int64_t rows = 0;
  int64_t head_dim = 0;  // D: 64 or 128
  const float* scale = nullptr;  // optional [heads]: a_h; rows are [B, heads, length]
  int64_t heads = 0, length = 0;
  float* dy_dot_y = nullptr;  // [rows], with scale
  // Outputs: dN in bfloat16 (what the window backward reads) and, with
  // float32 linear terms, in float32 (the linear part's gradient; bf16 terms
  // take the bf16 dN); dZ and dc float32.
  void* d_num_bf16 = nullptr;  // [rows, D]
  float* d_num = nullptr;      // [rows, D], with float32 lin_num
  float* d_den = nullptr;      // [rows]
  float* dc = nullptr;         // [rows], with lin_num
  void* stream = nullptr;      // cudaStream_t
};

bool WindowBwdPrologueSupported(const WindowBwdPrologueParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchWindowBwdPrologue(const WindowBwdPrologueParams& params);

}  // namespace linearize::kernels
