// Rotary embedding: one thread per rotated pair (i, i + D/2) of one head at
// one position, over both jobs (q then k) in one grid; reads x once, writes
// y once, in float32 with one rounding.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise/element_cast.cuh"
#include "kernels/rope/rope_params.h"

namespace linearize::kernels {
namespace {

constexpr int kThreads = 256;

int64_t Pairs(const RotaryParams& p, int job) {
  return p.batch * p.jobs[job].heads * p.length * (p.head_dim / 2);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) RotaryKernel(const RotaryParams p, int64_t pairs0,
                                                         int64_t pairs) {
  const int64_t half = p.head_dim / 2;
  const T* cos = static_cast<const T*>(p.cos);
  const T* sin = static_cast<const T*>(p.sin);
  for (int64_t e = blockIdx.x * int64_t{kThreads} + threadIdx.x; e < pairs;
       e += int64_t{gridDim.x} * kThreads) {
    const bool second = e >= pairs0;
    const RotaryJob job = second ? p.jobs[1] : p.jobs[0];
    const int64_t pair = second ? e - pairs0 : e;
    const int64_t i = pair % half;
    const int64_t row = pair / half;  // (b, h, t) in y's order
    const int64_t t = row % p.length;
    const int64_t h = (row / p.length) % job.heads;
    const int64_t b = row / (p.length * job.heads);
    const T* xr =
        static_cast<const T*>(job.x) + b * job.x_stride_b + h * job.x_stride_h + t * job.x_stride_t;
    const int64_t cs = b * p.cs_stride_b + t * p.head_dim;
    const float x1 = elementwise::ToFloat(xr[i]), x2 = elementwise::ToFloat(xr[i + half]);
    T* yr = static_cast<T*>(job.y) + row * p.head_dim;
    // rotate_half(x) = [-x2, x1]
    yr[i] = elementwise::FromFloat<T>(x1 * elementwise::ToFloat(cos[cs + i]) -
                                      x2 * elementwise::ToFloat(sin[cs + i]));
    yr[i + half] = elementwise::FromFloat<T>(x2 * elementwise::ToFloat(cos[cs + i + half]) +
                                             x1 * elementwise::ToFloat(sin[cs + i + half]));
  }
}

template <typename T>
void Launch(const RotaryParams& p, int64_t pairs0, int64_t pairs) {
  const int64_t blocks = (pairs + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
  RotaryKernel<T><<<grid, kThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(p, pairs0, pairs);
}

}  // namespace

const char* LaunchRotary(const RotaryParams& p) {
  if (p.num_jobs < 1 || p.num_jobs > 2) return "Rotary: num_jobs must be 1 or 2";
  const int64_t pairs0 = Pairs(p, 0);
  const int64_t pairs = pairs0 + (p.num_jobs == 2 ? Pairs(p, 1) : 0);
  if (pairs == 0) return nullptr;
  return elementwise::LaunchForType(p.type,
                                    [&](auto t) { Launch<decltype(t)>(p, pairs0, pairs); });
}

}  // namespace linearize::kernels
