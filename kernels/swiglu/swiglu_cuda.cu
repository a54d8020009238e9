// silu(gate) * up: one thread per output element, grid-stride; float32 math
// and one rounding.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise/element_cast.cuh"
#include "kernels/swiglu/swiglu_params.h"

namespace linearize::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) SiluMulKernel(const SiluMulParams p) {
  const T* in = static_cast<const T*>(p.gate_up);
  T* y = static_cast<T*>(p.y);
  const int64_t total = p.rows * p.inner;
  for (int64_t e = blockIdx.x * int64_t{kThreads} + threadIdx.x; e < total;
       e += int64_t{gridDim.x} * kThreads) {
    const int64_t row = e / p.inner, i = e % p.inner;
    const T* r = in + row * p.row_stride;
    const float g = elementwise::ToFloat(r[i]), u = elementwise::ToFloat(r[p.inner + i]);
    y[e] = elementwise::FromFloat<T>(g / (1.f + __expf(-g)) * u);
  }
}

template <typename T>
void Launch(const SiluMulParams& p) {
  const int64_t blocks = (p.rows * p.inner + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
  SiluMulKernel<T><<<grid, kThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(p);
}

}  // namespace

const char* LaunchSiluMul(const SiluMulParams& p) {
  if (p.rows * p.inner == 0) return nullptr;
  return elementwise::LaunchForType(p.type, [&](auto t) { Launch<decltype(t)>(p); });
}

}  // namespace linearize::kernels
