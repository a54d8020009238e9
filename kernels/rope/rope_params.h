// The plain struct the rotary CUDA kernel sees (rope_cuda.cu): pointers,
// sizes, strides and the stream, no LibTorch types. One launch rotates up to
// two tensors of the same batch, length and head size (q and k).
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct RotaryJob {
  const void* x = nullptr;  // [B, heads, T, D], strides below (the last one is 1)
  int64_t x_stride_b = 0, x_stride_h = 0, x_stride_t = 0;
  int64_t heads = 0;
  void* y = nullptr;  // [B, heads, T, D] contiguous
};

struct RotaryParams {
  RotaryJob jobs[2];
  int num_jobs = 1;
  const void* cos = nullptr;  // [Bc, T, D] contiguous, Bc = 1 (shared) or B
  const void* sin = nullptr;
  int64_t cs_stride_b = 0;                      // T * D per row, or 0 when shared by the batch
  int64_t batch = 0, length = 0, head_dim = 0;  // head_dim even
  ElementType type = ElementType::kF32;
  void* stream = nullptr;
};

// Launches the kernel; returns the launch error string, or nullptr on success.
const char* LaunchRotary(const RotaryParams& params);

}  // namespace linearize::kernels
