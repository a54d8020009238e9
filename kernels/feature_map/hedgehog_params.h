// The plain struct the Hedgehog feature-map CUDA kernel sees
// (hedgehog_cuda.cu): phi(x) = [softmax(x W_h), softmax(-x W_h)] per row of
// x, logits in float32, no LibTorch types.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct HedgehogParams {
  const void* x = nullptr;         // [B, H, T, D] contiguous, element type `type`
  const void* weight_t = nullptr;  // [H, Fh, D] contiguous (W_h transposed), same type
  void* out = nullptr;             // [B, H, T, 2 Fh] contiguous, same type
  int64_t batch = 0, heads = 0, length = 0;
  int64_t head_dim = 0;       // D: 64 or 128
  int64_t half_features = 0;  // Fh: 32 or 64
  ElementType type = ElementType::kBF16;  // kF32 or kBF16
  void* stream = nullptr;                 // cudaStream_t
};

bool HedgehogSupported(const HedgehogParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchHedgehog(const HedgehogParams& params);

// The backward (hedgehog_bwd_cuda.cu), bfloat16, in one pass: from the
// forward's output phi = [p, n] = [softmax(l), softmax(-l)] (l = x W_h) and
// its gradient [dp, dn], dl = p (dp - <dp, p>) - n (dn - <dn, n>) per row,
// then dx = d_pass + dl W_h^T and dW_h = sum over batch and rows of x^T dl.
// Or from dl itself, where another kernel formed it (phi, d_phi unused).
struct HedgehogBwdParams {
  const void* x = nullptr;         // [B, H, T, D] contiguous bfloat16
  const void* weight_t = nullptr;  // [H, Fh, D] contiguous bfloat16 (W_h transposed)
  const void* phi = nullptr;       // [B, H, T, 2 Fh] contiguous bfloat16
  const void* d_phi = nullptr;     // [B, H, T, 2 Fh] contiguous bfloat16
  const void* dl = nullptr;        // or [B, H, T, Fh] contiguous bfloat16
  const void* d_pass = nullptr;    // optional [B, H, T, D] bfloat16, added into dx
  void* d_x = nullptr;             // [B, H, T, D] bfloat16; with dl, null for dW alone
  float* d_weight = nullptr;       // [H, D, Fh] float32, zeroed by the caller (atomics)
  int64_t batch = 0, heads = 0, length = 0;
  int64_t head_dim = 0;       // D: 64 or 128
  int64_t half_features = 0;  // Fh: 32 or 64
  int sm_count = 132;         // multiprocessors (sizes the grid)
  void* stream = nullptr;     // cudaStream_t
};

bool HedgehogBwdSupported(const HedgehogBwdParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchHedgehogBwd(const HedgehogBwdParams& params);

}  // namespace linearize::kernels
