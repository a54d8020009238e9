// Small-batch Linear (1-4 rows): one warp per output feature reads that
// weight row once with 16-byte loads, eight in flight per lane, and keeps
// one float32 sum per input row; a warp shuffle reduces it and lane 0 adds
// bias and residual and rounds once. Variants fold an RMSNorm of x into the
// product (each warp reads all of x anyway, so it sums the squares too) and
// the SwiGLU gate (a warp reads the gate and the up row of its feature). A decode step at batch 1 is a chain of
// such products that only stream weights: cuBLAS picks split-K tiles for
// some (a reduction kernel more per GEMM) and reaches ~2.7 TB/s on an H100.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise/element_cast.cuh"
#include "kernels/gemv/gemv_params.h"

namespace linearize::kernels {
namespace {

constexpr int kWarps = 8;   // output features per CTA
constexpr int kUnroll = 8;  // 16-byte weight loads in flight per lane

// Weights are read once per call: bypass L1 so x stays there.
__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float2 Pair(uint32_t bits, __nv_bfloat16) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
}
__device__ __forceinline__ float2 Pair(uint32_t bits, __half) {
  return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}

// The dot product of two 16-byte vectors of T, added to acc.
template <typename T>
__device__ __forceinline__ float Dot(uint4 a, uint4 b, float acc) {
  if constexpr (sizeof(T) == 4) {
    acc = fmaf(__uint_as_float(a.x), __uint_as_float(b.x), acc);
    acc = fmaf(__uint_as_float(a.y), __uint_as_float(b.y), acc);
    acc = fmaf(__uint_as_float(a.z), __uint_as_float(b.z), acc);
    acc = fmaf(__uint_as_float(a.w), __uint_as_float(b.w), acc);
  } else {
    const uint32_t av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 fa = Pair(av[i], T{}), fb = Pair(bv[i], T{});
      acc = fmaf(fa.x, fb.x, acc);
      acc = fmaf(fa.y, fb.y, acc);
    }
  }
  return acc;
}

// x * g element-wise (both 16-byte vectors of T) as float32, into out.
template <typename T>
__device__ __forceinline__ void Unpack(uint4 a, float* out) {
  if constexpr (sizeof(T) == 4) {
    out[0] = __uint_as_float(a.x);
    out[1] = __uint_as_float(a.y);
    out[2] = __uint_as_float(a.z);
    out[3] = __uint_as_float(a.w);
  } else {
    const uint32_t av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = Pair(av[i], T{});
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

// One lane's share of a 16-byte piece of the K dimension: every row's
// product with the weight row(s), and with a norm, x's sum of squares.
template <typename T, int kRows, bool kGated, bool kNorm>
struct Piece {
  static constexpr int kVec = 16 / sizeof(T);
  __device__ __forceinline__ static void Add(uint4 w0, uint4 w1, const uint4* const* x,
                                             const uint4* g, int64_t v, float* acc0, float* acc1,
                                             float* ss) {
    if constexpr (!kNorm) {
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        const uint4 xv = __ldg(x[m] + v);
        acc0[m] = Dot<T>(w0, xv, acc0[m]);
        if constexpr (kGated) acc1[m] = Dot<T>(w1, xv, acc1[m]);
      }
    } else {
      float wf0[kVec], wf1[kVec], gf[kVec], xf[kVec];
      Unpack<T>(w0, wf0);
      if constexpr (kGated) Unpack<T>(w1, wf1);
      Unpack<T>(__ldg(g + v), gf);
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        Unpack<T>(__ldg(x[m] + v), xf);
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
          ss[m] = fmaf(xf[i], xf[i], ss[m]);
          const float xg = xf[i] * gf[i];
          acc0[m] = fmaf(wf0[i], xg, acc0[m]);
          if constexpr (kGated) acc1[m] = fmaf(wf1[i], xg, acc1[m]);
        }
      }
    }
  }
};

__device__ __forceinline__ float WarpSum(float s) {
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

template <typename T, int kRows, bool kGated, bool kNorm>
__global__ void __launch_bounds__(kWarps * 32) GemvKernel(const GemvParams p) {
  using P = Piece<T, kRows, kGated, kNorm>;
  const int lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (n >= p.n) return;
  const int64_t vecs = p.k / P::kVec;
  const uint4* w0 = reinterpret_cast<const uint4*>(static_cast<const T*>(p.w) + n * p.k);
  const uint4* w1 = kGated ? w0 + p.n * vecs : w0;  // the up row, n rows further
  const uint4* g = static_cast<const uint4*>(p.norm_weight);
  const uint4* x[kRows];
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    x[m] = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + m * p.x_stride);
  }
  float acc0[kRows] = {}, acc1[kRows] = {}, ss[kRows] = {};
  constexpr int kLoads = kGated ? kUnroll / 2 : kUnroll;  // the same bytes in flight
  int64_t v = lane;
  for (; v + (kLoads - 1) * 32 < vecs; v += kLoads * 32) {
    uint4 wv0[kLoads], wv1[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      wv0[u] = LoadStreaming(w0 + v + u * 32);
      if constexpr (kGated) wv1[u] = LoadStreaming(w1 + v + u * 32);
    }
#pragma unroll
    for (int u = 0; u < kLoads; ++u) P::Add(wv0[u], wv1[u], x, g, v + u * 32, acc0, acc1, ss);
  }
  for (; v < vecs; v += 32) {
    const uint4 a = LoadStreaming(w0 + v), b = kGated ? LoadStreaming(w1 + v) : a;
    P::Add(a, b, x, g, v, acc0, acc1, ss);
  }
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    float s = WarpSum(acc0[m]);
    if constexpr (kGated) acc1[m] = WarpSum(acc1[m]);
    if constexpr (kNorm) ss[m] = WarpSum(ss[m]);
    if (lane == 0) {
      const float inv_rms = kNorm ? rsqrtf(ss[m] / static_cast<float>(p.k) + p.eps) : 1.f;
      s *= inv_rms;
      if constexpr (kGated) s = s / (1.f + __expf(-s)) * (acc1[m] * inv_rms);
      if (p.bias != nullptr) s += elementwise::ToFloat(static_cast<const T*>(p.bias)[n]);
      if (p.residual != nullptr) {
        s += elementwise::ToFloat(static_cast<const T*>(p.residual)[m * p.residual_stride + n]);
      }
      static_cast<T*>(p.y)[m * p.y_stride + n] = elementwise::FromFloat<T>(s);
    }
  }
}

template <typename T, int kRows>
void LaunchRows(const GemvParams& p, unsigned grid, cudaStream_t stream) {
  const bool norm = p.norm_weight != nullptr;
  if (p.gated && norm) {
    GemvKernel<T, kRows, true, true><<<grid, kWarps * 32, 0, stream>>>(p);
  } else if (p.gated) {
    GemvKernel<T, kRows, true, false><<<grid, kWarps * 32, 0, stream>>>(p);
  } else if (norm) {
    GemvKernel<T, kRows, false, true><<<grid, kWarps * 32, 0, stream>>>(p);
  } else {
    GemvKernel<T, kRows, false, false><<<grid, kWarps * 32, 0, stream>>>(p);
  }
}

template <typename T>
void Launch(const GemvParams& p) {
  const unsigned grid = static_cast<unsigned>((p.n + kWarps - 1) / kWarps);
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  switch (p.rows) {
    case 1: LaunchRows<T, 1>(p, grid, stream); break;
    case 2: LaunchRows<T, 2>(p, grid, stream); break;
    case 3: LaunchRows<T, 3>(p, grid, stream); break;
    default: LaunchRows<T, 4>(p, grid, stream); break;
  }
}

int64_t ElementBytes(ElementType type) { return type == ElementType::kF32 ? 4 : 2; }

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool GemvSupported(const GemvParams& p) {
  const int64_t bytes = ElementBytes(p.type);
  return p.rows >= 1 && p.rows <= kGemvMaxRows && p.n >= 1 && p.k >= 1 &&
         (p.n + kWarps - 1) / kWarps <= 0x7fffffff && (p.k * bytes) % 16 == 0 &&
         (p.x_stride * bytes) % 16 == 0 && Aligned16(p.x) && Aligned16(p.w) && p.y != nullptr &&
         (p.norm_weight == nullptr || Aligned16(p.norm_weight)) &&
         (p.norm_weight == nullptr || p.residual == nullptr) &&
         (!p.gated || (p.bias == nullptr && p.residual == nullptr));
}

const char* LaunchGemv(const GemvParams& p) {
  if (!GemvSupported(p)) return "Gemv: unsupported sizes or alignment";
  return elementwise::LaunchForType(p.type, [&](auto t) { Launch<decltype(t)>(p); });
}

}  // namespace linearize::kernels
