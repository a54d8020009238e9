// LoLCATs decode, two launches. (1) `column_splits` CTAs per (row, head),
// each owning a block of the output's columns: each maps q (and the key
// leaving the window) through the feature maps, adds that key's outer
// product into its columns of S while reading phi(q) S there (one
// read-modify-write sweep), scores the whole window (the new key from the
// input, the others from the ring) and writes its columns of y. z is only
// read: every split needs all of it; the leaving key's features go to a
// scratch buffer. (2) one CTA per row adds those features to z, writes k, v
// into the ring and advances the position. (2) waits for (1) because (1)
// still reads the slot's old key and the old z. At batch 1 an 8B model has
// 32 heads for 132 SMs: splitting the columns fills the GPU and shortens
// each CTA's chain of dependent loads.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/linear_attention/decode_common.cuh"
#include "kernels/lolcats/lolcats_decode_params.h"

namespace linearize::kernels {
namespace {

using decode::kDecodeThreads;
constexpr int kMaxWindow = 1024;

template <typename T, typename W>
__global__ void __launch_bounds__(kDecodeThreads) AttendKernel(const LolcatsDecodeParams p) {
  __shared__ __align__(16) float xq[decode::kMaxHeadDim], xk[decode::kMaxHeadDim],
      vv[decode::kMaxHeadDim], num[decode::kMaxHeadDim], win[decode::kMaxHeadDim];
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
  const int dc = d / splits, c0 = split * dc;  // this CTA's output columns
  const int w = static_cast<int>(p.window);
  const int64_t pos = p.position[b];
  const int new_slot = static_cast<int>(pos % w);
  const bool evict = pos >= w;  // position pos - W leaves; it sits in new_slot
  const T* q = static_cast<const T*>(p.q) + bh * d;
  const T* k_new = static_cast<const T*>(p.k) + (b * p.kv_heads + hk) * d;
  const T* v_new = static_cast<const T*>(p.v) + (b * p.kv_heads + hk) * d;
  const T* ring_k = static_cast<const T*>(p.k_window) + (b * p.kv_heads + hk) * w * d;
  const T* ring_v = static_cast<const T*>(p.v_window) + (b * p.kv_heads + hk) * w * d;
  const int fh = p.q_weight != nullptr ? f / 2 : d;
  const int64_t hw = p.k_weight_heads == p.heads ? h : hk;
  const W* qw = static_cast<const W*>(p.q_weight);
  const W* kw = static_cast<const W*>(p.k_weight);
  // Everything this CTA reads after q is known now: start it all at once.
  if (qw != nullptr) decode::PrefetchL2(qw + h * d * fh, int64_t(d) * fh * sizeof(W));
  if (kw != nullptr && evict) decode::PrefetchL2(kw + hw * d * fh, int64_t(d) * fh * sizeof(W));
  decode::PrefetchL2(p.kv + bh * f * d, int64_t(f) * d * sizeof(float));
  decode::PrefetchL2(p.k_sum + bh * f, int64_t(f) * sizeof(float));
  decode::PrefetchL2(ring_k, int64_t(w) * d * sizeof(T));
  decode::PrefetchL2(ring_v, int64_t(w) * d * sizeof(T));
  for (int i = threadIdx.x; i < d; i += kDecodeThreads) {
    xq[i] = decode::Load(q, i);
    if (evict) {
      xk[i] = decode::Load(ring_k, int64_t(new_slot) * d + i);
      vv[i] = decode::Load(ring_v, int64_t(new_slot) * d + i);
    }
  }
  __syncthreads();
  decode::MapJob<W> jobs[2];
  jobs[0] = {xq, qw != nullptr ? qw + h * d * fh : nullptr, phq};
  jobs[1] = {xk, kw != nullptr ? kw + hw * d * fh : nullptr, evict ? phk : nullptr};
  decode::FeatureMaps2(jobs, d, fh);
  if (evict && split == 0) {  // z takes them in the ring-write kernel
    for (int i = threadIdx.x; i < f; i += kDecodeThreads) p.evicted_features[bh * f + i] = phk[i];
  }
  decode::SweepColumns(p.kv + bh * f * d, f, d, c0, dc, 1.f, evict ? phk : nullptr, vv, phq,
                       scratch, num);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // phi(q) . z after the leaving key joins it: the last warp.
  if (warp == kDecodeThreads / 32 - 1) {
    const float* z = p.k_sum + bh * f;
    float part = 0.f;
    for (int r = lane; r < f; r += 32) part = fmaf(phq[r], z[r] + (evict ? phk[r] : 0.f), part);
    part = decode::WarpSum(part);
    if (lane == 0) lin_den = part;
  }
  decode::WindowScores(xq, ring_k, k_new, pos, w, d, p.scale, weights);
  if (warp == 0) {
    float mx = -INFINITY;
    for (int s = lane; s < w; s += 32) mx = fmaxf(mx, weights[s]);
    mx = decode::WarpMax(mx);
    if (lane == 0) win_max = mx;
  }
  __syncthreads();
  const float logit =
      p.logit_type == ElementType::kF32
          ? decode::Load(static_cast<const float*>(p.window_logit), h)
          : decode::Load(static_cast<const __nv_bfloat16*>(p.window_logit), h);
  const float gate = 1.f / (1.f + __expf(-logit));
  for (int s = threadIdx.x; s < w; s += kDecodeThreads) {
    const float x = weights[s];
    weights[s] = x == -INFINITY ? 0.f : gate * __expf(x - win_max);
  }
  __syncthreads();
  if (warp == 0) {
    float sum = 0.f;
    for (int s = lane; s < w; s += 32) sum += weights[s];
    sum = decode::WarpSum(sum);
    if (lane == 0) win_den = sum;
  }
  decode::WindowValues(weights, ring_v, v_new, pos, w, d, c0, dc, scratch, win);
  const float inv = 1.f / (win_den + lin_den);
  T* y = static_cast<T*>(p.y) + bh * d + c0;
  for (int i = threadIdx.x; i < dc; i += kDecodeThreads) {
    decode::Store(y, i, (num[i] + win[i]) * inv);
  }
}

constexpr int kRingThreads = 1024;  // an 8B model's row: 2048 ring values, 4096 z entries

template <typename T>
__global__ void __launch_bounds__(kRingThreads) RingWriteKernel(const LolcatsDecodeParams p) {
  const int64_t b = blockIdx.x;
  const int64_t pos = p.position[b];
  const int64_t slot = pos % p.window, d = p.head_dim;
  T* __restrict__ ring_k = static_cast<T*>(p.k_window);
  T* __restrict__ ring_v = static_cast<T*>(p.v_window);
  const T* __restrict__ k = static_cast<const T*>(p.k);
  const T* __restrict__ v = static_cast<const T*>(p.v);
  decode::RingStore(ring_k, ring_v, k, v, b, p.kv_heads, p.window, slot, d);
  if (pos >= p.window) {  // the key at pos - W left the window: its features join z
    const int64_t n = p.heads * p.feature_dim;
    float* __restrict__ z = p.k_sum + b * n;
    const float* __restrict__ add = p.evicted_features + b * n;
#pragma unroll 4
    for (int64_t e = threadIdx.x; e < n; e += kRingThreads) z[e] += add[e];
  }
  __syncthreads();  // every thread has read the position
  if (threadIdx.x == 0) p.position[b] = pos + 1;
}

template <typename T>
const char* Launch(const LolcatsDecodeParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  const unsigned grid = static_cast<unsigned>(p.batch * p.heads * p.column_splits);
  if (p.weight_type == ElementType::kF32) {
    AttendKernel<T, float><<<grid, kDecodeThreads, 0, stream>>>(p);
  } else {
    AttendKernel<T, __nv_bfloat16><<<grid, kDecodeThreads, 0, stream>>>(p);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cudaGetErrorString(err);
  RingWriteKernel<T><<<static_cast<unsigned>(p.batch), kRingThreads, 0, stream>>>(p);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

bool LolcatsDecodeSupported(const LolcatsDecodeParams& p) {
  const bool hedgehog = p.q_weight != nullptr && p.k_weight != nullptr;
  const bool elu = p.q_weight == nullptr && p.k_weight == nullptr;
  const bool maps = (hedgehog && p.feature_dim % 2 == 0 && p.feature_dim / 2 <= 128 &&
                     (p.k_weight_heads == p.heads || p.k_weight_heads == p.kv_heads)) ||
                    (elu && p.feature_dim == p.head_dim);
  return maps && p.head_dim >= 4 && p.head_dim % 4 == 0 && p.head_dim <= decode::kMaxHeadDim &&
         p.feature_dim >= 1 && p.feature_dim <= decode::kMaxFeatures && p.window >= 1 &&
         p.window <= kMaxWindow && p.batch >= 1 && p.heads >= 1 && p.kv_heads >= 1 &&
         p.heads % p.kv_heads == 0 &&
         (p.type == ElementType::kF32 || p.type == ElementType::kBF16) &&
         (p.weight_type == ElementType::kF32 || p.weight_type == ElementType::kBF16) &&
         p.window_logit != nullptr &&
         (p.column_splits == 1 || p.column_splits == 2 || p.column_splits == 4) &&
         p.head_dim % (4 * p.column_splits) == 0;
}

const char* LaunchLolcatsDecode(const LolcatsDecodeParams& p) {
  if (!LolcatsDecodeSupported(p)) return "LolcatsDecode: unsupported sizes or element type";
  if (p.evicted_features == nullptr) return "LolcatsDecode: no scratch for the evicted features";
  return p.type == ElementType::kF32 ? Launch<float>(p) : Launch<__nv_bfloat16>(p);
}

}  // namespace linearize::kernels
