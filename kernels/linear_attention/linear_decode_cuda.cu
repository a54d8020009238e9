// Baseline linear-attention decode: one CTA per (row, head) updates its
// float32 state in one read-modify-write sweep and writes y; every session of
// the batch advances in one launch.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/linear_attention/decode_common.cuh"
#include "kernels/linear_attention/linear_decode_params.h"

namespace linearize::kernels {
namespace {

using decode::kDecodeThreads;

template <typename T, typename W>
__global__ void __launch_bounds__(kDecodeThreads) LinearDecodeKernel(const LinearDecodeParams p) {
  __shared__ __align__(16) float xq[decode::kMaxHeadDim], xk[decode::kMaxHeadDim],
      vv[decode::kMaxHeadDim], num[decode::kMaxHeadDim];
  __shared__ __align__(16) float phq[decode::kMaxFeatures], phk[decode::kMaxFeatures];
  __shared__ __align__(16) float scratch[kDecodeThreads * 4];
  __shared__ float den;
  const int64_t bh = blockIdx.x;
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const int64_t hk = h / (p.heads / p.kv_heads);
  const int d = static_cast<int>(p.head_dim), f = static_cast<int>(p.feature_dim);
  const T* q = static_cast<const T*>(p.q) + bh * d;
  const T* k = static_cast<const T*>(p.k) + (b * p.kv_heads + hk) * d;
  const T* v = static_cast<const T*>(p.v) + (b * p.kv_heads + hk) * d;
  for (int i = threadIdx.x; i < d; i += kDecodeThreads) {
    xq[i] = decode::Load(q, i);
    xk[i] = decode::Load(k, i);
    vv[i] = decode::Load(v, i);
  }
  __syncthreads();
  const int fh = p.q_weight != nullptr ? f / 2 : d;
  const int64_t hw = p.k_weight_heads == p.heads ? h : hk;
  const W* qw = static_cast<const W*>(p.q_weight);
  const W* kw = static_cast<const W*>(p.k_weight);
  decode::MapJob<W> jobs[2];
  jobs[0] = {xq, qw != nullptr ? qw + h * d * fh : nullptr, phq};
  jobs[1] = {xk, kw != nullptr ? kw + hw * d * fh : nullptr, phk};
  decode::FeatureMaps2(jobs, d, fh);
  decode::StateSweep(p.kv + bh * f * d, p.k_sum + bh * f, f, d, phk, vv, phq, scratch, num, &den);
  const float inv = 1.f / (den + p.eps);
  T* y = static_cast<T*>(p.y) + bh * d;
  for (int i = threadIdx.x; i < d; i += kDecodeThreads) decode::Store(y, i, num[i] * inv);
}

}  // namespace

bool LinearDecodeSupported(const LinearDecodeParams& p) {
  const bool hedgehog = p.q_weight != nullptr && p.k_weight != nullptr;
  const bool elu = p.q_weight == nullptr && p.k_weight == nullptr;
  const bool maps = (hedgehog && p.feature_dim % 2 == 0 && p.feature_dim / 2 <= 128 &&
                     (p.k_weight_heads == p.heads || p.k_weight_heads == p.kv_heads)) ||
                    (elu && p.feature_dim == p.head_dim);
  return maps && p.head_dim >= 4 && p.head_dim % 4 == 0 && p.head_dim <= decode::kMaxHeadDim &&
         p.feature_dim >= 1 && p.feature_dim <= decode::kMaxFeatures && p.batch >= 1 &&
         p.heads >= 1 && p.kv_heads >= 1 && p.heads % p.kv_heads == 0 &&
         (p.type == ElementType::kF32 || p.type == ElementType::kBF16) &&
         (p.weight_type == ElementType::kF32 || p.weight_type == ElementType::kBF16);
}

const char* LaunchLinearDecode(const LinearDecodeParams& p) {
  if (!LinearDecodeSupported(p)) return "LinearDecode: unsupported sizes or element type";
  const dim3 grid(static_cast<unsigned>(p.batch * p.heads));
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  using bf16 = __nv_bfloat16;
  const bool wf = p.weight_type == ElementType::kF32;
  if (p.type == ElementType::kF32) {
    if (wf) LinearDecodeKernel<float, float><<<grid, kDecodeThreads, 0, stream>>>(p);
    else LinearDecodeKernel<float, bf16><<<grid, kDecodeThreads, 0, stream>>>(p);
  } else {
    if (wf) LinearDecodeKernel<bf16, float><<<grid, kDecodeThreads, 0, stream>>>(p);
    else LinearDecodeKernel<bf16, bf16><<<grid, kDecodeThreads, 0, stream>>>(p);
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace linearize::kernels
