// The plain struct the small-batch Linear CUDA kernel sees (gemv_cuda.cu).
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

// y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) (+ residual[m, n]) for m < rows.
// All of x, w, bias, residual, norm_weight and y share the element type.
// Rows of x, w and y are contiguous; x and w rows start 16-byte aligned
// (k * size % 16 == 0). residual may be y itself (accumulate in place).
// Two optional stages around the product:
// - norm_weight (then no residual): x's rows are RMS-normalised first,
//   x / sqrt(mean(x^2) + eps) * norm_weight, in float32 (the products read
//   x once either way);
// - gated (then no bias or residual): w holds 2n rows [gate; up] and
//   y[m, j] = silu(g_j) * u_j, the SwiGLU gate of the two products.
struct GemvParams {
  const void* x = nullptr;  // [rows, k], row stride x_stride
  int64_t x_stride = 0;
  const void* w = nullptr;         // [n, k] contiguous
  const void* bias = nullptr;      // [n] or null
  const void* residual = nullptr;  // [rows, n] with row stride residual_stride, or null
  int64_t residual_stride = 0;
  void* y = nullptr;  // [rows, n], row stride y_stride
  int64_t y_stride = 0;
  const void* norm_weight = nullptr;  // [k] or null
  float eps = 1e-6f;
  bool gated = false;
  int64_t rows = 0, n = 0, k = 0;  // n: output features (w has 2n rows when gated)
  ElementType type = ElementType::kBF16;
  void* stream = nullptr;
};

constexpr int64_t kGemvMaxRows = 4;

// Whether the kernel takes these sizes and pointers (else the caller uses
// cuBLAS).
bool GemvSupported(const GemvParams& params);

// Launches the kernel; returns the launch error string, or nullptr on success.
const char* LaunchGemv(const GemvParams& params);

}  // namespace linearize::kernels
