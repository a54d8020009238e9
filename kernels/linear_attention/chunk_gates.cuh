// Gate prefixes for the chunked (gated) linear attention kernels (.cu only):
// the in-chunk prefix sums of 64 log gates as a float64 finite part plus a
// count of -inf gates, so b_i - b_j is exact to float32 rounding and a gate of
// exactly 0 between j and i gives weight 0. Every exponent formed is <= 0.
// The bf16 kernels' pairwise weights take the prefixes rounded once to
// float32 (in log2 units): b_i - b_j then carries an absolute error of about
// |b| 2^-24, a relative error of the weight under 1e-4 while |b| < 1000 in
// a chunk, far below bf16's rounding, for one subtraction and one exp2
// instead of a float64 subtraction, a conversion and a float64 shuffle.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

namespace linearize::kernels::gates {

// Inclusive prefix of a chunk's 64 log gates, lane l holding positions l and
// 32 + l: float64 finite part and the number of -inf gates.
struct Prefix {
  double f0, f1;
  int c0, c1;
  float e0, e1;  // f0, f1 times log2(e), rounded to float32 (Decay2)
};

__device__ __forceinline__ Prefix ScanGates(const float* lg) {
  const int lane = threadIdx.x & 31;
  Prefix p;
  const float a = lg[lane], b = lg[32 + lane];
  p.c0 = isinf(a) ? 1 : 0;
  p.c1 = isinf(b) ? 1 : 0;
  p.f0 = p.c0 ? 0.0 : double(a);
  p.f1 = p.c1 ? 0.0 : double(b);
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const double x0 = __shfl_up_sync(0xffffffffu, p.f0, off);
    const double x1 = __shfl_up_sync(0xffffffffu, p.f1, off);
    const int y0 = __shfl_up_sync(0xffffffffu, p.c0, off);
    const int y1 = __shfl_up_sync(0xffffffffu, p.c1, off);
    if (lane >= off) {
      p.f0 += x0;
      p.f1 += x1;
      p.c0 += y0;
      p.c1 += y1;
    }
  }
  p.f1 += __shfl_sync(0xffffffffu, p.f0, 31);
  p.c1 += __shfl_sync(0xffffffffu, p.c0, 31);
  constexpr double kLog2e = 1.4426950408889634;
  p.e0 = float(p.f0 * kLog2e);
  p.e1 = float(p.f1 * kLog2e);
  return p;
}

// exp(b_i - b_j) for j <= i (0 when a -inf gate lies between).
__device__ __forceinline__ float Decay(double fi, int ci, double fj, int cj) {
  return ci > cj ? 0.f : __expf(float(fi - fj));
}

// The same from Prefix's float32 log2-unit prefixes (e = b log2(e)).
__device__ __forceinline__ float Decay2(float ei, int ci, float ej, int cj) {
  return ci > cj ? 0.f : exp2f(ei - ej);  // ex2.approx under --use_fast_math
}

// exp(b) of a prefix (0 past a -inf gate): a query's decay from the chunk's
// start, or the chunk's own from its last.
__device__ __forceinline__ float QueryDecay(double f, int c) { return c ? 0.f : __expf(float(f)); }

// Warp 0 publishes exp(b_last - b_j) (key decays) and exp(b_last) (chunk
// decay); returns b_last.
__device__ __forceinline__ void PublishKeyDecays(const Prefix& p, float* k_dec, float* chunk_dec,
                                                 double& last_f, int& last_c) {
  const int lane = threadIdx.x & 31;
  last_f = __shfl_sync(0xffffffffu, p.f1, 31);
  last_c = __shfl_sync(0xffffffffu, p.c1, 31);
  k_dec[lane] = Decay(last_f, last_c, p.f0, p.c0);
  k_dec[32 + lane] = Decay(last_f, last_c, p.f1, p.c1);
  if (lane == 0) *chunk_dec = QueryDecay(last_f, last_c);
}

// Warp 0 publishes exp(b_i) (query decays) and exp(b_last) (chunk decay).
__device__ __forceinline__ void PublishQueryDecays(const Prefix& p, float* q_dec,
                                                   float* chunk_dec) {
  const int lane = threadIdx.x & 31;
  q_dec[lane] = QueryDecay(p.f0, p.c0);
  q_dec[32 + lane] = QueryDecay(p.f1, p.c1);
  const double last_f = __shfl_sync(0xffffffffu, p.f1, 31);
  const int last_c = __shfl_sync(0xffffffffu, p.c1, 31);
  if (lane == 0) *chunk_dec = QueryDecay(last_f, last_c);
}

// PublishKeyDecays, and exp(b_i) (query decays).
__device__ __forceinline__ void PublishDecays(const Prefix& p, float* q_dec, float* k_dec,
                                              float* chunk_dec, double& last_f, int& last_c) {
  const int lane = threadIdx.x & 31;
  PublishKeyDecays(p, k_dec, chunk_dec, last_f, last_c);
  q_dec[lane] = QueryDecay(p.f0, p.c0);
  q_dec[32 + lane] = QueryDecay(p.f1, p.c1);
}

// A warp's 16 x 32 score tile (rows r0 + g (+8), columns c0 + 8 nt + 2t (+1),
// the mma C layout) masked to j <= i and, if gated, times exp(b_i - b_j).
// `pre` is the warp's own copy of the chunk's prefix (lanes hold positions l
// and 32 + l). All lanes of the warp must call it. kExact: the float64
// prefixes (float32 kernels), else Decay2's float32 ones (bf16 kernels).
template <bool kExact = false>
__device__ __forceinline__ void MaskAndDecay(float (&acc)[4][4], int r0, int c0, bool gated,
                                             const Prefix& pre) {
  using Exponent = std::conditional_t<kExact, double, float>;
  const auto part = [&](bool hi) -> Exponent {
    if constexpr (kExact) {
      return hi ? pre.f1 : pre.f0;
    } else {
      return hi ? pre.e1 : pre.e0;
    }
  };
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int i0 = r0 + g, i1 = i0 + 8;
  Exponent fi0 = 0, fi1 = 0;
  int ci0 = 0, ci1 = 0;
  if (gated) {  // rows live in half r0 / 32 (warp-uniform)
    const bool hi_half = r0 >= 32;
    fi0 = __shfl_sync(0xffffffffu, part(hi_half), i0 & 31);
    fi1 = __shfl_sync(0xffffffffu, part(hi_half), i1 & 31);
    ci0 = __shfl_sync(0xffffffffu, hi_half ? pre.c1 : pre.c0, i0 & 31);
    ci1 = __shfl_sync(0xffffffffu, hi_half ? pre.c1 : pre.c0, i1 & 31);
  }
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int j = c0 + 8 * nt + 2 * t + e;
      float w0 = j <= i0 ? 1.f : 0.f, w1 = j <= i1 ? 1.f : 0.f;
      if (gated) {
        const bool hi_half = c0 >= 32;
        const Exponent fj = __shfl_sync(0xffffffffu, part(hi_half), j & 31);
        const int cj = __shfl_sync(0xffffffffu, hi_half ? pre.c1 : pre.c0, j & 31);
        if constexpr (kExact) {
          if (j <= i0) w0 = Decay(fi0, ci0, fj, cj);
          if (j <= i1) w1 = Decay(fi1, ci1, fj, cj);
        } else {
          if (j <= i0) w0 = Decay2(fi0, ci0, fj, cj);
          if (j <= i1) w1 = Decay2(fi1, ci1, fj, cj);
        }
      }
      acc[nt][e] *= w0;
      acc[nt][2 + e] *= w1;
    }
  }
}

}  // namespace linearize::kernels::gates
