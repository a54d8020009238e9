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

// The backward to the logits l = x W_h (hedgehog_bwd_cuda.cu), from the
// forward's output phi = [p, n] = [softmax(l), softmax(-l)] and its gradient
// [dp, dn]: dl = p (dp - <dp, p>) - n (dn - <dn, n>) per row. The products
// dx = dl W_h^T and dW_h = x^T dl are left to cuBLAS.
struct HedgehogBwdParams {
  const void* phi = nullptr;    // [rows, 2 Fh] contiguous bfloat16
  const void* d_phi = nullptr;  // [rows, 2 Fh] contiguous bfloat16
  void* d_logits = nullptr;     // [rows, Fh] contiguous bfloat16
  int64_t rows = 0;
  int64_t half_features = 0;  // Fh: 32 or 64
  void* stream = nullptr;     // cudaStream_t
};

bool HedgehogBwdSupported(const HedgehogBwdParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchHedgehogBwd(const HedgehogBwdParams& params);

}  // namespace linearize::kernels
