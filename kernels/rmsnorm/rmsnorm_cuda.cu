// RMSNorm forward: one thread block per row. Sum of squares in float32,
// reduced through warp shuffles then shared memory; the row is read twice
// (the second read hits L1/L2 for the row sizes LLMs use).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise/element_cast.cuh"
#include "kernels/rmsnorm/rmsnorm_params.h"

namespace linearize::kernels {
namespace {

using elementwise::FromFloat;
using elementwise::ToFloat;

// 1024 threads: a decode step normalises one row per sequence, and each
// thread then has a few loads in flight instead of a chain of 16 (4096-wide rows).
constexpr int kThreads = 1024;

__device__ float BlockSum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.f;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
RmsNormKernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ y,
              int64_t dim, int64_t x_row_stride, float eps) {
  const T* row = x + blockIdx.x * x_row_stride;
  T* out = y + blockIdx.x * dim;
  float sum_sq = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    const float v = ToFloat(row[i]);
    sum_sq += v * v;
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq) / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    // Same rounding order as the reference: normalise in float, round to T,
    // then scale by the weight.
    const T normed = FromFloat<T>(ToFloat(row[i]) * inv_rms);
    out[i] = FromFloat<T>(ToFloat(normed) * ToFloat(weight[i]));
  }
}

template <typename T>
void Launch(const RmsNormParams& p) {
  RmsNormKernel<T><<<static_cast<unsigned>(p.rows), kThreads, 0,
                     static_cast<cudaStream_t>(p.stream)>>>(
      static_cast<const T*>(p.x), static_cast<const T*>(p.weight), static_cast<T*>(p.y), p.dim,
      p.x_row_stride, p.eps);
}

}  // namespace

const char* LaunchRmsNorm(const RmsNormParams& p) {
  if (p.rows == 0) return nullptr;
  return elementwise::LaunchForType(p.type, [&](auto t) { Launch<decltype(t)>(p); });
}

}  // namespace linearize::kernels
