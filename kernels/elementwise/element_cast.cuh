// float32 <-> element type conversions shared by the element-wise kernels,
// and the launch of a kernel templated on the element type (.cu only, no
// ATen).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels::elementwise {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ T FromFloat(float v);
template <> __device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <> __device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls launch(T{}) with T the C++ type of `type`, then returns the launch
// error string, or nullptr on success.
template <typename F>
const char* LaunchForType(ElementType type, F&& launch) {
  switch (type) {
    case ElementType::kF32: launch(float{}); break;
    case ElementType::kF16: launch(__half{}); break;
    case ElementType::kBF16: launch(__nv_bfloat16{}); break;
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace linearize::kernels::elementwise
