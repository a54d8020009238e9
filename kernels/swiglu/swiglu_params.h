// The plain struct the SiluMul CUDA kernel sees (swiglu_cuda.cu).
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct SiluMulParams {
  const void* gate_up = nullptr;  // [rows, 2 inner], rows strided by row_stride
  int64_t row_stride = 0;
  void* y = nullptr;  // [rows, inner] contiguous
  int64_t rows = 0, inner = 0;
  ElementType type = ElementType::kF32;
  void* stream = nullptr;
};

// Launches the kernel; returns the launch error string, or nullptr on success.
const char* LaunchSiluMul(const SiluMulParams& params);

}  // namespace linearize::kernels
