// Hedgehog feature map on tensor cores: one CTA of 4 warps per 64 rows of one
// (b, h); logits x W_h (64 x Fh) by bf16 mma (hi/lo split for float32
// inputs), both softmaxes in float32 registers (rows shared by a quad of
// lanes), written as [softmax(l), softmax(-l)].
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/feature_map/hedgehog_params.h"
#include "kernels/linear_attention/tile_mma.cuh"

namespace linearize::kernels {
namespace {

using tiles::bf16;
constexpr int kRows = 64;
constexpr int kThreads = 128;

template <typename T, int D, int FH>
struct HCfg {
  static constexpr bool kSplit = std::is_same_v<T, float>;
  static constexpr int kPlanes = kSplit ? 2 : 1;
  static constexpr int SD = tiles::Stride(D);
  static constexpr int kX = kRows * SD;
  static constexpr int kW = FH * SD;
  static constexpr int kBytes = kPlanes * (kX + kW) * 2;
};

template <typename T, int D, int FH>
__global__ void __launch_bounds__(kThreads) HedgehogKernel(const HedgehogParams p) {
  using Cf = HCfg<T, D, FH>;
  constexpr bool S = Cf::kSplit;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sx = reinterpret_cast<bf16*>(smem_raw);
  bf16* sw = sx + Cf::kPlanes * Cf::kX;
  const int64_t t0 = int64_t(blockIdx.x) * kRows;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  const T* x = static_cast<const T*>(p.x) + bh * p.length * D;
  const T* w = static_cast<const T*>(p.weight_t) + int64_t(blockIdx.y) * FH * D;
  tiles::LoadTile<T, kRows, D, kThreads>(sx, Cf::SD, Cf::kX, x, t0, p.length);
  tiles::LoadTile<T, FH, D, kThreads>(sw, Cf::SD, Cf::kW, w, 0, FH);
  tiles::CpAsyncCommit();
  tiles::CpAsyncWaitAll();
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;
  float acc[FH / 8][4] = {};
#pragma unroll
  for (int k0 = 0; k0 < D; k0 += 16) {
    uint32_t ah[4], al[4] = {};
    tiles::LoadA(ah, sx, Cf::SD, r0, k0);
    if constexpr (S) tiles::LoadA(al, sx + Cf::kX, Cf::SD, r0, k0);
#pragma unroll
    for (int j = 0; j < FH / 8; j += 2) {
      uint32_t bh4[4], bl4[4] = {};
      tiles::LoadB2(bh4, sw, Cf::SD, 8 * j, k0);
      if constexpr (S) tiles::LoadB2(bl4, sw + Cf::kW, Cf::SD, 8 * j, k0);
      tiles::Mma3<S>(acc[j], ah, al, bh4[0], bh4[1], bl4[0], bl4[1]);
      tiles::Mma3<S>(acc[j + 1], ah, al, bh4[2], bh4[3], bl4[2], bl4[3]);
    }
  }
  // Rows g (elements 0, 1) and g + 8 (elements 2, 3); a row's Fh logits are
  // spread over the 4 lanes of a quad.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float mx = -INFINITY, mn = INFINITY;
#pragma unroll
    for (int j = 0; j < FH / 8; ++j) {
      mx = fmaxf(mx, fmaxf(acc[j][2 * half], acc[j][2 * half + 1]));
      mn = fminf(mn, fminf(acc[j][2 * half], acc[j][2 * half + 1]));
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, off));
    }
    float ep[FH / 8][2], en[FH / 8][2];
    float sp = 0.f, sn = 0.f;
#pragma unroll
    for (int j = 0; j < FH / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float l = acc[j][2 * half + e];
        ep[j][e] = __expf(l - mx);
        en[j][e] = __expf(mn - l);
        sp += ep[j][e];
        sn += en[j][e];
      }
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      sp += __shfl_xor_sync(0xffffffffu, sp, off);
      sn += __shfl_xor_sync(0xffffffffu, sn, off);
    }
    const int64_t pos = t0 + r0 + g + 8 * half;
    if (pos < p.length) {
      const float ip = 1.f / sp, in = 1.f / sn;
      T* out = static_cast<T*>(p.out) + (bh * p.length + pos) * (2 * FH);
#pragma unroll
      for (int j = 0; j < FH / 8; ++j) {
        const int col = 8 * j + 2 * t;
        tiles::StoreOut2(out + col, ep[j][0] * ip, ep[j][1] * ip);
        tiles::StoreOut2(out + FH + col, en[j][0] * in, en[j][1] * in);
      }
    }
  }
}

template <typename T, int D, int FH>
const char* Launch(const HedgehogParams& p) {
  using Cf = HCfg<T, D, FH>;
  cudaError_t err = cudaFuncSetAttribute(HedgehogKernel<T, D, FH>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, Cf::kBytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const dim3 grid(static_cast<unsigned>((p.length + kRows - 1) / kRows),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  HedgehogKernel<T, D, FH>
      <<<grid, kThreads, Cf::kBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename T>
const char* LaunchTyped(const HedgehogParams& p) {
  if (p.head_dim == 64 && p.half_features == 32) return Launch<T, 64, 32>(p);
  if (p.head_dim == 64 && p.half_features == 64) return Launch<T, 64, 64>(p);
  if (p.head_dim == 128 && p.half_features == 32) return Launch<T, 128, 32>(p);
  return Launch<T, 128, 64>(p);
}

}  // namespace

bool HedgehogSupported(const HedgehogParams& p) {
  return (p.head_dim == 64 || p.head_dim == 128) &&
         (p.half_features == 32 || p.half_features == 64) &&
         (p.type == ElementType::kF32 || p.type == ElementType::kBF16) && p.batch >= 1 &&
         p.batch <= 65535 && p.heads >= 1 && p.heads <= 65535 && p.length >= 1;
}

const char* LaunchHedgehog(const HedgehogParams& p) {
  if (!HedgehogSupported(p)) return "Hedgehog: unsupported sizes or element type";
  return p.type == ElementType::kF32 ? LaunchTyped<float>(p) : LaunchTyped<bf16>(p);
}

}  // namespace linearize::kernels
