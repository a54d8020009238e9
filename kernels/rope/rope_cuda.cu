// Rotary embedding: one thread per rotated pair (i, i + D/2) of one head at
// one position; reads x once, writes y once, in float32 with one rounding.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise/element_cast.cuh"
#include "kernels/rope/rope_params.h"

namespace linearize::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) RotaryKernel(const RotaryParams p) {
  const int64_t half = p.head_dim / 2;
  const int64_t pairs = p.batch * p.heads * p.length * half;
  const T* x = static_cast<const T*>(p.x);
  const T* cos = static_cast<const T*>(p.cos);
  const T* sin = static_cast<const T*>(p.sin);
  T* y = static_cast<T*>(p.y);
  for (int64_t e = blockIdx.x * int64_t{kThreads} + threadIdx.x; e < pairs;
       e += int64_t{gridDim.x} * kThreads) {
    const int64_t i = e % half;
    int64_t row = e / half;  // (b, h, t) in y's order
    const int64_t t = row % p.length;
    const int64_t h = (row / p.length) % p.heads;
    const int64_t b = row / (p.length * p.heads);
    const T* xr = x + b * p.x_stride_b + h * p.x_stride_h + t * p.x_stride_t;
    const int64_t cs = b * p.cs_stride_b + t * p.head_dim;
    const float x1 = elementwise::ToFloat(xr[i]), x2 = elementwise::ToFloat(xr[i + half]);
    T* yr = y + row * p.head_dim;
    // rotate_half(x) = [-x2, x1]
    yr[i] = elementwise::FromFloat<T>(x1 * elementwise::ToFloat(cos[cs + i]) -
                                      x2 * elementwise::ToFloat(sin[cs + i]));
    yr[i + half] = elementwise::FromFloat<T>(x2 * elementwise::ToFloat(cos[cs + i + half]) +
                                             x1 * elementwise::ToFloat(sin[cs + i + half]));
  }
}

template <typename T>
void Launch(const RotaryParams& p, int64_t pairs) {
  const int64_t blocks = (pairs + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
  RotaryKernel<T><<<grid, kThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(p);
}

}  // namespace

const char* LaunchRotary(const RotaryParams& p) {
  const int64_t pairs = p.batch * p.heads * p.length * (p.head_dim / 2);
  if (pairs == 0) return nullptr;
  switch (p.type) {
    case ElementType::kF32: Launch<float>(p, pairs); break;
    case ElementType::kF16: Launch<__half>(p, pairs); break;
    case ElementType::kBF16: Launch<__nv_bfloat16>(p, pairs); break;
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace linearize::kernels
