// CTA-wide float32 helpers for the single-token decode kernels (.cu only, no
// ATen): feature maps of one vector, and the fused pass over a head's
// recurrent state that adds one outer product and reads phi(q) S and
// phi(q) . z in the same sweep (the state is read and written once).
// All functions are called by every thread of a kDecodeThreads CTA.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace linearize::kernels::decode {

constexpr int kDecodeThreads = 256;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxFeatures = 256;

__device__ __forceinline__ float Load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void Store(float* p, int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, int64_t i, float x) {
  p[i] = __float2bfloat16_rn(x);
}

// Starts fetching the `bytes` at p into L2, one 128-byte line per request,
// spread over the CTA's threads: no registers, no wait. A decode kernel is a
// chain of dependent phases; loads of later phases then hit L2 instead of
// waiting for memory one phase at a time.
__device__ __forceinline__ void PrefetchL2(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = int64_t(threadIdx.x) * 128; off < bytes; off += int64_t(blockDim.x) * 128) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
  }
}

__device__ __forceinline__ float WarpSum(float x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}
__device__ __forceinline__ float WarpMax(float x) {
  for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}

// Hedgehog logits of x[d] with w [d][fh] (global; fh <= 128) into out[0..fh),
// then the two softmaxes in place: out[0..fh) = softmax(l), out[fh..2fh) =
// softmax(-l). `slot` 0 or 1 picks the thread range and the warp, so two
// vectors can be mapped at once. Elu+1 (w == nullptr): out[i] = elu(x_i) + 1.
template <typename W>
struct MapJob {
  const float* x = nullptr;  // smem [d]
  const W* w = nullptr;      // global [d][fh] (float32 or bf16), or nullptr for elu+1
  float* out = nullptr;      // smem [2 fh] (or [d] for elu+1); nullptr: no job
};

template <typename W>
__device__ inline void FeatureMaps2(const MapJob<W> (&jobs)[2], int d, int fh) {
  const int tid = threadIdx.x;
  // Logits (or elu+1): job j uses threads [j * 128, j * 128 + 128). An
  // output sums d products; 128 / fh threads share it, each taking every
  // (128 / fh)-th input, so each thread has few loads of w, all in flight at
  // once (a 128-long chain of dependent global loads was most of a step).
  __shared__ float partial[2][128];
  const int j = tid / 128, i0 = tid % 128;
  const MapJob<W> job = j == 0 ? jobs[0] : jobs[1];
  const int slices = fh > 0 && fh <= 128 ? 128 / fh : 1;
  if (job.out != nullptr) {
    if (job.w == nullptr) {
      for (int i = i0; i < d; i += 128) {
        const float x = job.x[i];
        job.out[i] = x > 0.f ? x + 1.f : __expf(x);
      }
    } else if (i0 < slices * fh) {
      const int f = i0 % fh, slice = i0 / fh;
      float acc = 0.f;
#pragma unroll 32
      for (int k = slice; k < d; k += slices) {
        acc = fmaf(job.x[k], Load(job.w, int64_t(k) * fh + f), acc);
      }
      partial[j][i0] = acc;
    }
  }
  __syncthreads();
  if (job.out != nullptr && job.w != nullptr && i0 < fh) {
    float sum = 0.f;
    for (int slice = 0; slice < slices; ++slice) sum += partial[j][slice * fh + i0];
    job.out[i0] = sum;
  }
  __syncthreads();
  // Softmaxes: warp j normalises job j.
  const int warp = tid / 32, lane = tid % 32;
  const MapJob<W> mine = warp == 0 ? jobs[0] : jobs[1];
  if (warp < 2 && mine.out != nullptr && mine.w != nullptr) {
    float* out = mine.out;
    float mx = -INFINITY, mn = INFINITY;
    for (int f = lane; f < fh; f += 32) {
      mx = fmaxf(mx, out[f]);
      mn = fminf(mn, out[f]);
    }
    mx = WarpMax(mx);
    mn = -WarpMax(-mn);
    float sp = 0.f, sn = 0.f;
    for (int f = lane; f < fh; f += 32) {
      sp += __expf(out[f] - mx);
      sn += __expf(mn - out[f]);
    }
    sp = WarpSum(sp);
    sn = WarpSum(sn);
    for (int f = lane; f < fh; f += 32) {
      const float l = out[f];
      out[fh + f] = __expf(mn - l) / sn;
      out[f] = __expf(l - mx) / sp;
    }
  }
  __syncthreads();
}

// The column block [c0, c0 + dc) of a head's state S [f][d] (row-major
// float32, global): if add_k != nullptr, S[:, block] = decay S[:, block] +
// add_k add_v[block]^T; then num[0..dc) = phi_q S[:, block] (after the
// update). smem: add_k [f], add_v [d], phi_q [f]; scratch >= kDecodeThreads
// * 4 floats. dc % 4 == 0.
__device__ inline void SweepColumns(float* S, int f, int d, int c0, int dc, float decay,
                                    const float* add_k, const float* add_v, const float* phi_q,
                                    float* scratch, float* num) {
  const int tid = threadIdx.x;
  const int cols4 = dc / 4, groups = kDecodeThreads / cols4;
  const int c4 = tid % cols4, grp = tid / cols4;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (grp < groups) {
    float4 v4 = make_float4(0.f, 0.f, 0.f, 0.f);
    if (add_k != nullptr) v4 = reinterpret_cast<const float4*>(add_v + c0)[c4];
    float4* s4 = reinterpret_cast<float4*>(S + c0);
    const int row4 = d / 4;
#pragma unroll 8
    for (int r = grp; r < f; r += groups) {
      float4 s = s4[r * row4 + c4];
      if (add_k != nullptr) {
        const float a = add_k[r];
        s.x = fmaf(a, v4.x, decay * s.x);
        s.y = fmaf(a, v4.y, decay * s.y);
        s.z = fmaf(a, v4.z, decay * s.z);
        s.w = fmaf(a, v4.w, decay * s.w);
        s4[r * row4 + c4] = s;
      }
      const float qf = phi_q[r];
      acc.x = fmaf(qf, s.x, acc.x);
      acc.y = fmaf(qf, s.y, acc.y);
      acc.z = fmaf(qf, s.z, acc.z);
      acc.w = fmaf(qf, s.w, acc.w);
    }
    reinterpret_cast<float4*>(scratch)[grp * cols4 + c4] = acc;
  }
  __syncthreads();
  for (int c = tid; c < dc; c += kDecodeThreads) {
    float sum = 0.f;
    for (int g = 0; g < groups; ++g) sum += scratch[g * dc + c];
    num[c] = sum;
  }
  __syncthreads();
}


// One sweep over the whole state S [f][d] (row-major float32, global) and z [f]:
//   if add_k != nullptr: S += add_k add_v^T, z += add_k
//   num[0..d) = phi_q S (after the update), *den = phi_q . z (after).
// smem as SweepColumns.
__device__ inline void StateSweep(float* S, float* z, int f, int d, const float* add_k,
                                  const float* add_v, const float* phi_q, float* scratch,
                                  float* num, float* den) {
  SweepColumns(S, f, d, 0, d, 1.f, add_k, add_v, phi_q, scratch, num);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp == 0) {
    float part = 0.f;
    for (int r = lane; r < f; r += 32) {
      float zr = z[r];
      if (add_k != nullptr) {
        zr += add_k[r];
        z[r] = zr;
      }
      part = fmaf(phi_q[r], zr, part);
    }
    part = WarpSum(part);
    if (lane == 0) *den = part;
  }
  __syncthreads();
}

// Window scores of one (row, head): weights[s] = q . k_s * scale for the W
// ring slots that hold a position (slot s holds pos - ((pos - s) mod W) once
// the new key is in; valid if >= 0), -inf for the others. The new key (slot
// pos % W) is read from k_new, the others from the ring. 4 threads per slot,
// so their loads are in flight together. q: smem [d]. Ends with a barrier.
template <typename T>
__device__ inline void WindowScores(const float* q, const T* ring_k, const T* k_new, int64_t pos,
                                    int w, int d, float scale, float* weights) {
  constexpr int kParts = 4;
  const int new_slot = static_cast<int>(pos % w);
  for (int base = 0; base < w; base += kDecodeThreads / kParts) {
    const int s = base + static_cast<int>(threadIdx.x) / kParts;
    const int part = threadIdx.x % kParts;
    const int64_t held = s < w ? pos - ((pos - s) % w + w) % w : -1;
    float dot = 0.f;
    if (held >= 0) {
      const T* key = s == new_slot ? k_new : ring_k + int64_t(s) * d;
#pragma unroll 32
      for (int i = part; i < d; i += kParts) dot = fmaf(q[i], Load(key, i), dot);
    }
    dot += __shfl_xor_sync(0xffffffffu, dot, 1);
    dot += __shfl_xor_sync(0xffffffffu, dot, 2);
    if (s < w && part == 0) weights[s] = held >= 0 ? dot * scale : -INFINITY;
  }
  __syncthreads();
}

// out[i] = sum_s weights[s] v_s[c0 + i] for the CTA's columns i < dc (the
// new value, slot pos % W, from v_new; slots of weight 0 are not read):
// kDecodeThreads / dc threads per column take every few slots. scratch >=
// kDecodeThreads floats; out: smem [dc]. Ends with a barrier.
template <typename T>
__device__ inline void WindowValues(const float* weights, const T* ring_v, const T* v_new,
                                    int64_t pos, int w, int d, int c0, int dc, float* scratch,
                                    float* out) {
  const int new_slot = static_cast<int>(pos % w);
  const int parts = kDecodeThreads / dc;
  const int col = static_cast<int>(threadIdx.x) % dc, vpart = static_cast<int>(threadIdx.x) / dc;
  if (vpart < parts) {
    float acc = 0.f;
#pragma unroll 8
    for (int s = vpart; s < w; s += parts) {
      const float a = weights[s];
      const float val = a == 0.f          ? 0.f
                        : s == new_slot ? Load(v_new, c0 + col)
                                        : Load(ring_v, int64_t(s) * d + c0 + col);
      acc = fmaf(a, val, acc);
    }
    scratch[vpart * dc + col] = acc;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < dc; i += kDecodeThreads) {
    float sum = 0.f;
    for (int v = 0; v < parts; ++v) sum += scratch[v * dc + i];
    out[i] = sum;
  }
  __syncthreads();
}

// Row b's new keys and values [kv_heads][d] into ring slot `slot` of
// [B][kv_heads][W][d] rings: the second launch of a hybrid's decode step.
template <typename T>
__device__ inline void RingStore(T* ring_k, T* ring_v, const T* k, const T* v, int64_t b,
                                 int64_t kv_heads, int64_t window, int64_t slot, int64_t d) {
  for (int64_t e = threadIdx.x; e < kv_heads * d; e += blockDim.x) {
    const int64_t hk = e / d, i = e % d;
    const int64_t dst = ((b * kv_heads + hk) * window + slot) * d + i;
    ring_k[dst] = k[(b * kv_heads + hk) * d + i];
    ring_v[dst] = v[(b * kv_heads + hk) * d + i];
  }
}

}  // namespace linearize::kernels::decode
