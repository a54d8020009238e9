// The plain struct the RMSNorm CUDA kernel sees: pointers, sizes and the
// stream, no LibTorch types (the .cu file never includes ATen).
#pragma once

#include <cstdint>

namespace linearize::kernels {

enum class ElementType { kF32, kF16, kBF16 };

struct RmsNormParams {
  const void* x = nullptr;       // [rows, dim], rows contiguous with stride x_row_stride
  const void* weight = nullptr;  // [dim], contiguous, same element type as x
  void* y = nullptr;             // [rows, dim], contiguous
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t x_row_stride = 0;  // elements between consecutive rows of x
  float eps = 1e-6f;
  ElementType type = ElementType::kF32;
  void* stream = nullptr;  // cudaStream_t of the caller's current stream
};

// Launches the kernel; returns the launch error string, or nullptr on success.
const char* LaunchRmsNorm(const RmsNormParams& params);

}  // namespace linearize::kernels
