// Hedgehog's two softmaxes of a row, phi = [softmax(l), softmax(-l)], over
// logits held in tensor-core accumulator fragments: mma.sync m16n8 tiles, or
// a warp's slice of a wgmma m64nN accumulator, which has the same layout. A
// thread holds rows g (elements 0, 1 of each n-tile) and g + 8 (elements 2,
// 3), columns 8 j + 2 t + e; a row's logits are spread over a quad's four
// lanes. Shared by the chunked kernels that fuse the maps.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace linearize::kernels::hedgehog {

// One row's max and min logit and the reciprocals of sum exp(l - max) and
// sum exp(min - l): p = exp(l - mx) ip, n = exp(mn - l) in.
struct RowHalfSoftmax {
  float mx, mn, ip, in;

  __device__ float P(float l) const { return __expf(l - mx) * ip; }
  __device__ float N(float l) const { return __expf(mn - l) * in; }
};

// The functions below read the row of the thread's half h (0: row g, 1:
// row g + 8) of kTiles n-tiles; logit(j, i) is element i of n-tile j. Every
// lane of the warp must call them. First, the row's max and min logit.
template <int kTiles, class Logit>
__device__ __forceinline__ void RowHalfExtrema(const Logit& logit, int h, float& mx, float& mn) {
  mx = -INFINITY;
  mn = INFINITY;
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
    mx = fmaxf(mx, fmaxf(logit(j, 2 * h), logit(j, 2 * h + 1)));
    mn = fminf(mn, fminf(logit(j, 2 * h), logit(j, 2 * h + 1)));
  }
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, off));
  }
}

// The row's RowHalfSoftmax statistics.
template <int kTiles, class Logit>
__device__ __forceinline__ RowHalfSoftmax RowHalfSoftmaxOf(const Logit& logit, int h) {
  float mx, mn;
  RowHalfExtrema<kTiles>(logit, h, mx, mn);
  float sp = 0.f, sn = 0.f;
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      sp += __expf(logit(j, 2 * h + e) - mx);
      sn += __expf(mn - logit(j, 2 * h + e));
    }
  }
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    sp += __shfl_xor_sync(0xffffffffu, sp, off);
    sn += __shfl_xor_sync(0xffffffffu, sn, off);
  }
  return {mx, mn, 1.f / sp, 1.f / sn};
}

// The same softmaxes computed in place, one exponential per element and
// half where RowHalfSoftmax::P / N take a second: pos(j, i) is a reference
// to element i of n-tile j, holding the logit on entry and softmax(l) on
// return; neg(j, i) receives softmax(-l). For callers with the registers to
// hold both halves at once.
template <int kTiles, class Pos, class Neg>
__device__ __forceinline__ void RowHalfPhiInPlace(const Pos& pos, const Neg& neg, int h) {
  constexpr float kLog2e = 1.4426950408889634f;
  float mx, mn;
  RowHalfExtrema<kTiles>(pos, h, mx, mn);
  const float bp = mx * kLog2e, bn = mn * kLog2e;  // exp(l - mx) = exp2(l log2(e) - bp)
  float sp = 0.f, sn = 0.f;
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& x = pos(j, 2 * h + e);
      const float p = exp2f(fmaf(x, kLog2e, -bp)), n = exp2f(fmaf(-x, kLog2e, bn));
      x = p;
      neg(j, 2 * h + e) = n;
      sp += p;
      sn += n;
    }
  }
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    sp += __shfl_xor_sync(0xffffffffu, sp, off);
    sn += __shfl_xor_sync(0xffffffffu, sn, off);
  }
  const float ip = 1.f / sp, in = 1.f / sn;
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      pos(j, 2 * h + e) *= ip;
      neg(j, 2 * h + e) *= in;
    }
  }
}

}  // namespace linearize::kernels::hedgehog
