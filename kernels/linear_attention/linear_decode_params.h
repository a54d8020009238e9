// The plain struct the baseline linear-attention decode CUDA kernel sees
// (linear_decode_cuda.cu): one token for each of B rows (sessions) at once,
// no LibTorch types. Per (row, head), as linear_attention::DecodeStep:
//   S += phi(k) v^T, z += phi(k), y = phi(q) S / (phi(q) . z + eps).
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct LinearDecodeParams {
  float* kv = nullptr;     // [B, H, F, D] float32, updated in place
  float* k_sum = nullptr;  // [B, H, F] float32, updated in place
  const void* q = nullptr;  // [B, H, D] contiguous, element type `type`
  const void* k = nullptr;  // [B, Hkv, D]; query head h reads h / (H / Hkv)
  const void* v = nullptr;  // [B, Hkv, D]
  // Feature maps: hedgehog weights [H, D, Fh] and [Hw, D, Fh] (Hw = H: key map
  // per query head; Hw = Hkv: per kv head), element type weight_type (kF32 or
  // kBF16; logits in float32 either way); both null for elu+1.
  const void* q_weight = nullptr;
  const void* k_weight = nullptr;
  int64_t k_weight_heads = 0;
  ElementType weight_type = ElementType::kF32;
  void* y = nullptr;  // [B, H, D], element type `type`
  int64_t batch = 0, heads = 0, kv_heads = 0;
  int64_t head_dim = 0;     // D: multiple of 4, <= 128
  int64_t feature_dim = 0;  // F: 2 Fh (<= 256) or D for elu+1
  float eps = 1e-6f;
  ElementType type = ElementType::kBF16;  // kF32 or kBF16
  void* stream = nullptr;
};

bool LinearDecodeSupported(const LinearDecodeParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchLinearDecode(const LinearDecodeParams& params);

}  // namespace linearize::kernels
