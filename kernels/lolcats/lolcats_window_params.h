// The plain struct the LoLCATs window CUDA kernel sees
// (lolcats_window_cuda.cu), no LibTorch types. For query i (0-based), window
// keys j in [max(0, i - W + 1), i], s_ij = q_i . k_j * scale, c_i = their max:
//   y_i = (g sum_win exp(s_ij - c_i) v_j + lin_num_i) / (g sum_win exp(s_ij - c_i) + lin_den_i)
// lin_num / lin_den are the linear part over keys j <= i - W (from the
// chunked linear kernel with key_delay = W), one shared normaliser.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct LolcatsWindowParams {
  const void* q = nullptr;  // [B, H, T, D] contiguous, element type `type`
  const void* k = nullptr;  // [B, Hkv, T, D]; query head h reads h / (H / Hkv)
  const void* v = nullptr;  // [B, Hkv, T, D]
  const float* gate = nullptr;     // [H] g = sigmoid(window logit)
  const float* lin_num = nullptr;  // [B, H, T, D] float32, or null (no linear terms)
  const float* lin_den = nullptr;  // [B, H, T] float32, or null
  void* y = nullptr;               // [B, H, T, D], element type `type`
  int64_t batch = 0, heads = 0, kv_heads = 0, length = 0;
  int64_t head_dim = 0;  // 64 or 128
  int64_t window = 64;   // 1..64
  float scale = 1.f;     // 1 / sqrt(D)
  ElementType type = ElementType::kBF16;  // kF32 or kBF16
  void* stream = nullptr;
};

bool LolcatsWindowSupported(const LolcatsWindowParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchLolcatsWindow(const LolcatsWindowParams& params);

}  // namespace linearize::kernels
