// Lizard decode, two launches, shaped like the LoLCATs decode
// (lolcats_decode_cuda.cu). (1) `column_splits` CTAs per (row, head), each
// owning a block of the output's columns: each maps q and the new key
// through the feature maps, decays its columns of S and adds the key's outer
// product while reading phi(q) S there (one read-modify-write sweep), forms
// phi(q) . (gamma z + phi(k)) from the old z, scores the window (the new
// window key from the input, the others from the ring) beside the sinks,
// and writes its columns of y. (2) one CTA per row moves z on, writes the
// window key and v into the ring and advances the position; it waits for
// (1) because (1) still reads the slot's old key and the old z.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/linear_attention/decode_common.cuh"
#include "kernels/lizard/lizard_decode_params.h"

namespace linearize::kernels {
namespace {

using decode::kDecodeThreads;
constexpr int kMaxWindow = 1024;
constexpr int kMaxMeta = 32;

template <typename T, typename W>
__global__ void __launch_bounds__(kDecodeThreads) LizardAttendKernel(const LizardDecodeParams p) {
  __shared__ __align__(16) float xq[decode::kMaxHeadDim], xk[decode::kMaxHeadDim],
      vv[decode::kMaxHeadDim], xw[decode::kMaxHeadDim], num[decode::kMaxHeadDim],
      win[decode::kMaxHeadDim];
  __shared__ __align__(16) float phq[decode::kMaxFeatures], phk[decode::kMaxFeatures];
  __shared__ __align__(16) float scratch[kDecodeThreads * 4];
  __shared__ float weights[kMaxWindow];
  __shared__ float lin_den, win_den, win_max;
  const int splits = static_cast<int>(p.column_splits);
  const int64_t bh = blockIdx.x / splits;
  const int split = static_cast<int>(blockIdx.x % splits);
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const int64_t hk = h / (p.heads / p.kv_heads);
  const int d = static_cast<int>(p.head_dim), f = static_cast<int>(p.feature_dim);
  const int fh = f / 2;
  const int dc = d / splits, c0 = split * dc;  // this CTA's output columns
  const int w = static_cast<int>(p.window);
  const int64_t pos = p.position[b];
  const int64_t kv_row = (b * p.kv_heads + hk) * d;
  const T* ring_k = static_cast<const T*>(p.k_window) + (b * p.kv_heads + hk) * w * d;
  const T* ring_v = static_cast<const T*>(p.v_window) + (b * p.kv_heads + hk) * w * d;
  const T* kw_new = static_cast<const T*>(p.k_window_new) + kv_row;
  const T* v_new = static_cast<const T*>(p.v) + kv_row;
  const W* qw = static_cast<const W*>(p.q_weight) + h * d * fh;
  const W* kw =
      static_cast<const W*>(p.k_weight) + (p.k_weight_heads == p.heads ? h : hk) * d * fh;
  decode::PrefetchL2(qw, int64_t(d) * fh * sizeof(W));
  decode::PrefetchL2(kw, int64_t(d) * fh * sizeof(W));
  decode::PrefetchL2(p.kv + bh * f * d, int64_t(f) * d * sizeof(float));
  decode::PrefetchL2(p.k_sum + bh * f, int64_t(f) * sizeof(float));
  decode::PrefetchL2(ring_k, int64_t(w) * d * sizeof(T));
  decode::PrefetchL2(ring_v, int64_t(w) * d * sizeof(T));
  for (int i = threadIdx.x; i < d; i += kDecodeThreads) {
    xq[i] = decode::Load(static_cast<const T*>(p.q) + bh * d, i);
    xk[i] = decode::Load(static_cast<const T*>(p.k) + kv_row, i);
    vv[i] = decode::Load(v_new, i);
    xw[i] = decode::Load(static_cast<const T*>(p.q_window) + bh * d, i);
  }
  const float gamma = __expf(
      p.log_gamma[b * p.gamma_heads + (p.gamma_heads == p.heads ? h : hk)]);
  __syncthreads();
  decode::MapJob<W> jobs[2];
  jobs[0] = {xq, qw, phq};
  jobs[1] = {xk, kw, phk};
  decode::FeatureMaps2(jobs, d, fh);
  if (split == 0) {  // z takes them in the second launch
    for (int i = threadIdx.x; i < f; i += kDecodeThreads) p.new_features[bh * f + i] = phk[i];
  }
  decode::SweepColumns(p.kv + bh * f * d, f, d, c0, dc, gamma, phk, vv, phq, scratch, num);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // phi(q) . (gamma z + phi(k)): the last warp.
  if (warp == kDecodeThreads / 32 - 1) {
    const float* z = p.k_sum + bh * f;
    float part = 0.f;
    for (int r = lane; r < f; r += 32) part = fmaf(phq[r], fmaf(gamma, z[r], phk[r]), part);
    part = decode::WarpSum(part);
    if (lane == 0) lin_den = part + p.eps;
  }
  decode::WindowScores(xw, ring_k, kw_new, pos, w, d, p.scale, weights);
  const float* meta = p.meta > 0 ? p.meta_logits + h * p.meta : nullptr;
  if (warp == 0) {  // the shift: the largest of the scores and the sinks
    float mx = -INFINITY;
    for (int s = lane; s < w; s += 32) mx = fmaxf(mx, weights[s]);
    for (int m = lane; m < p.meta; m += 32) mx = fmaxf(mx, meta[m]);
    mx = decode::WarpMax(mx);
    if (lane == 0) win_max = mx;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < w; s += kDecodeThreads) {
    const float x = weights[s];
    weights[s] = x == -INFINITY ? 0.f : __expf(x - win_max);
  }
  __syncthreads();
  if (warp == 0) {
    float sum = 0.f;
    for (int s = lane; s < w; s += 32) sum += weights[s];
    for (int m = lane; m < p.meta; m += 32) sum += __expf(meta[m] - win_max);
    sum = decode::WarpSum(sum);
    if (lane == 0) win_den = sum;
  }
  decode::WindowValues(weights, ring_v, v_new, pos, w, d, c0, dc, scratch, win);
  const float alpha = p.alpha[h];
  T* y = static_cast<T*>(p.y) + bh * d + c0;
  for (int i = threadIdx.x; i < dc; i += kDecodeThreads) {
    decode::Store(y, i, num[i] / lin_den + alpha * win[i] / win_den);
  }
}

constexpr int kRingThreads = 1024;

template <typename T>
__global__ void __launch_bounds__(kRingThreads) LizardRingKernel(const LizardDecodeParams p) {
  const int64_t b = blockIdx.x;
  const int64_t pos = p.position[b];
  const int64_t slot = pos % p.window, d = p.head_dim;
  T* __restrict__ ring_k = static_cast<T*>(p.k_window);
  T* __restrict__ ring_v = static_cast<T*>(p.v_window);
  const T* __restrict__ k = static_cast<const T*>(p.k_window_new);
  const T* __restrict__ v = static_cast<const T*>(p.v);
  decode::RingStore(ring_k, ring_v, k, v, b, p.kv_heads, p.window, slot, d);
  const int64_t f = p.feature_dim, n = p.heads * f;
  float* __restrict__ z = p.k_sum + b * n;
  const float* __restrict__ add = p.new_features + b * n;
  const int64_t group = p.heads / p.kv_heads;
#pragma unroll 4
  for (int64_t e = threadIdx.x; e < n; e += kRingThreads) {
    const int64_t h = e / f;
    const float lg = p.log_gamma[b * p.gamma_heads + (p.gamma_heads == p.heads ? h : h / group)];
    z[e] = fmaf(__expf(lg), z[e], add[e]);
  }
  __syncthreads();  // every thread has read the position
  if (threadIdx.x == 0) p.position[b] = pos + 1;
}

template <typename T>
const char* Launch(const LizardDecodeParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  const unsigned grid = static_cast<unsigned>(p.batch * p.heads * p.column_splits);
  if (p.weight_type == ElementType::kF32) {
    LizardAttendKernel<T, float><<<grid, kDecodeThreads, 0, stream>>>(p);
  } else {
    LizardAttendKernel<T, __nv_bfloat16><<<grid, kDecodeThreads, 0, stream>>>(p);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cudaGetErrorString(err);
  LizardRingKernel<T><<<static_cast<unsigned>(p.batch), kRingThreads, 0, stream>>>(p);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

bool LizardDecodeSupported(const LizardDecodeParams& p) {
  return p.q_weight != nullptr && p.k_weight != nullptr && p.feature_dim % 2 == 0 &&
         p.feature_dim / 2 <= 128 && p.feature_dim <= decode::kMaxFeatures &&
         (p.k_weight_heads == p.heads || p.k_weight_heads == p.kv_heads) && p.head_dim >= 4 &&
         p.head_dim % 4 == 0 && p.head_dim <= decode::kMaxHeadDim && p.window >= 1 &&
         p.window <= kMaxWindow && p.meta >= 0 && p.meta <= kMaxMeta && p.batch >= 1 &&
         p.heads >= 1 && p.kv_heads >= 1 && p.heads % p.kv_heads == 0 &&
         (p.gamma_heads == p.heads || p.gamma_heads == p.kv_heads) &&
         (p.type == ElementType::kF32 || p.type == ElementType::kBF16) &&
         (p.weight_type == ElementType::kF32 || p.weight_type == ElementType::kBF16) &&
         p.log_gamma != nullptr && p.alpha != nullptr && (p.meta == 0 || p.meta_logits != nullptr) &&
         (p.column_splits == 1 || p.column_splits == 2 || p.column_splits == 4) &&
         p.head_dim % (4 * p.column_splits) == 0;
}

const char* LaunchLizardDecode(const LizardDecodeParams& p) {
  if (!LizardDecodeSupported(p)) return "LizardDecode: unsupported sizes or element type";
  if (p.new_features == nullptr) return "LizardDecode: no scratch for the new key's features";
  return p.type == ElementType::kF32 ? Launch<float>(p) : Launch<__nv_bfloat16>(p);
}

}  // namespace linearize::kernels
