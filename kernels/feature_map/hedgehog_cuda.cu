// Hedgehog feature map on tensor cores. One CTA of 4 warps runs up to
// kTilesPerCta consecutive 64-row tiles of one (b, h): the map weight loads
// once, and the next tile loads (cp.async) while the current one computes.
// Logits x W_h (64 x Fh) by bf16 mma (hi/lo split for float32 inputs), both
// softmaxes in float32 registers (rows shared by a quad of lanes), written as
// [softmax(l), softmax(-l)]: bf16 rows go through shared memory and out in
// whole 16-byte stores (the quads' scattered 4-byte stores left half of each
// sector unwritten per instruction).
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
constexpr int kTilesPerCta = 4;

template <typename T, int D, int FH>
struct HCfg {
  static constexpr bool kSplit = std::is_same_v<T, float>;
  static constexpr int kPlanes = kSplit ? 2 : 1;
  static constexpr int SD = tiles::Stride(D);
  static constexpr int SO = tiles::Stride(2 * FH);  // staged bf16 output rows
  static constexpr int kX = kRows * SD;
  static constexpr int kW = FH * SD;
  static constexpr int kO = kSplit ? 0 : kRows * SO;
  // Two x buffers, the weight, the output stage (bf16 only).
  static constexpr int kBytes = (kPlanes * (2 * kX + kW) + kO) * 2;
};

template <typename T, int D, int FH>
__global__ void __launch_bounds__(kThreads) HedgehogKernel(const HedgehogParams p) {
  using Cf = HCfg<T, D, FH>;
  constexpr bool S = Cf::kSplit;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sw = reinterpret_cast<bf16*>(smem_raw);
  bf16* sx = sw + Cf::kPlanes * Cf::kW;      // [2][planes][kX]
  bf16* so = sx + 2 * Cf::kPlanes * Cf::kX;  // [kRows][SO]
  const int64_t tiles_total = (p.length + kRows - 1) / kRows;
  const int64_t tile0 = int64_t(blockIdx.x) * kTilesPerCta;
  const int count =
      tiles_total - tile0 < kTilesPerCta ? static_cast<int>(tiles_total - tile0) : kTilesPerCta;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  const T* x = static_cast<const T*>(p.x) + bh * p.length * D;
  const T* w = static_cast<const T*>(p.weight_t) + int64_t(blockIdx.y) * FH * D;
  const auto load_x = [&](int i) {
    tiles::LoadTile<T, kRows, D, kThreads>(sx + (i & 1) * Cf::kPlanes * Cf::kX, Cf::SD, Cf::kX, x,
                                           (tile0 + i) * kRows, p.length);
    tiles::CpAsyncCommit();
  };
  tiles::LoadTile<T, FH, D, kThreads>(sw, Cf::SD, Cf::kW, w, 0, FH);
  load_x(0);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;
  for (int i = 0; i < count; ++i) {
    if (i + 1 < count) {
      load_x(i + 1);
      tiles::CpAsyncWaitGroup<1>();
    } else {
      tiles::CpAsyncWaitAll();
    }
    __syncthreads();  // tile i landed; the stage's previous rows are out
    const bf16* xs = sx + (i & 1) * Cf::kPlanes * Cf::kX;
    float acc[FH / 8][4] = {};
#pragma unroll
    for (int k0 = 0; k0 < D; k0 += 16) {
      uint32_t ah[4], al[4] = {};
      tiles::LoadA(ah, xs, Cf::SD, r0, k0);
      if constexpr (S) tiles::LoadA(al, xs + Cf::kX, Cf::SD, r0, k0);
#pragma unroll
      for (int j = 0; j < FH / 8; j += 2) {
        uint32_t bh4[4], bl4[4] = {};
        tiles::LoadB2(bh4, sw, Cf::SD, 8 * j, k0);
        if constexpr (S) tiles::LoadB2(bl4, sw + Cf::kW, Cf::SD, 8 * j, k0);
        tiles::Mma3<S>(acc[j], ah, al, bh4[0], bh4[1], bl4[0], bl4[1]);
        tiles::Mma3<S>(acc[j + 1], ah, al, bh4[2], bh4[3], bl4[2], bl4[3]);
      }
    }
    const int64_t row0 = (tile0 + i) * kRows;
    // Rows g (elements 0, 1) and g + 8 (elements 2, 3); a row's Fh logits
    // are spread over the 4 lanes of a quad.
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
      const float ip = 1.f / sp, in = 1.f / sn;
      const int r = r0 + g + 8 * half;
      if constexpr (S) {
        if (row0 + r < p.length) {
          T* out = static_cast<T*>(p.out) + (bh * p.length + row0 + r) * (2 * FH);
#pragma unroll
          for (int j = 0; j < FH / 8; ++j) {
            const int col = 8 * j + 2 * t;
            tiles::StoreOut2(out + col, ep[j][0] * ip, ep[j][1] * ip);
            tiles::StoreOut2(out + FH + col, en[j][0] * in, en[j][1] * in);
          }
        }
      } else {
#pragma unroll
        for (int j = 0; j < FH / 8; ++j) {
          const int col = 8 * j + 2 * t;
          tiles::StoreOut2(so + r * Cf::SO + col, ep[j][0] * ip, ep[j][1] * ip);
          tiles::StoreOut2(so + r * Cf::SO + FH + col, en[j][0] * in, en[j][1] * in);
        }
      }
    }
    // The stage is full, and every warp is done with this tile's x buffer
    // (the next iteration loads into it).
    __syncthreads();
    if constexpr (!S) {
      constexpr int kVecs = 2 * FH / 8;  // 16-byte vectors per row
      bf16* out = static_cast<bf16*>(p.out) + (bh * p.length + row0) * (2 * FH);
      for (int v = threadIdx.x; v < kRows * kVecs; v += kThreads) {
        const int r = v / kVecs, c = 8 * (v % kVecs);
        if (row0 + r < p.length) {
          *reinterpret_cast<uint4*>(out + r * (2 * FH) + c) =
              *reinterpret_cast<const uint4*>(so + r * Cf::SO + c);
        }
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
  const int64_t tiles = (p.length + kRows - 1) / kRows;
  const dim3 grid(static_cast<unsigned>((tiles + kTilesPerCta - 1) / kTilesPerCta),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  HedgehogKernel<T, D, FH><<<grid, kThreads, Cf::kBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
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
