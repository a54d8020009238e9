// Backward of the Hedgehog feature map in one pass over the rows, bf16 on
// tensor cores. One CTA of 8 warps runs a range of 64-row tiles of one
// (b, h), the next tile's phi, d_phi and x (the next two tiles' dl and x,
// given dl) loading (cp.async) while the current one computes:
//   dl = p (dp - <dp, p>) - n (dn - <dn, n>)   (float32 from phi = [p, n] and
//                                              d_phi = [dp, dn]; bf16 in smem)
//   dW_h += x^T dl                             (registers across the range)
//   dx = d_pass + dl W_h^T                     (stored per tile, through the
//                                              tile's x rows in shared memory)
// and at the end the CTA adds its dW_h into the float32 output (atomics: the
// CTAs of a head, and the batch, share it). Rows past the end load as zeros,
// so their dl is 0. Given dl (kGivenDl: the chunked backward formed it from
// its unrounded d_phi), a tile is dl and x, loaded straight into the stage;
// and d_x may then be null: dW alone (LoLCATs' fold, where the window
// backward kernels add dl W^T into q's and k's gradients themselves).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/feature_map/hedgehog_params.h"
#include "kernels/linear_attention/tile_mma.cuh"

namespace linearize::kernels {
namespace {

using tiles::bf16;
constexpr int kRows = 64;
constexpr int kThreads = 256;

template <int D, int FH, bool kGivenDl>
struct BCfg {
  static constexpr int SF = tiles::Stride(2 * FH);  // phi, d_phi rows
  static constexpr int SD = tiles::Stride(D);       // x rows, W^T rows
  static constexpr int SL = tiles::Stride(FH);      // dl rows
  static constexpr int kF = kRows * SF, kX = kRows * SD, kW = FH * SD, kL = kRows * SL;
  // One tile's inputs: phi, d_phi, x, or (kGivenDl) dl, x; dl computed
  // from phi and d_phi goes to a buffer of its own.
  static constexpr int kIn = kGivenDl ? kL : 2 * kF;
  static constexpr int kStage = kIn + kX;
  // Given dl, a stage is small enough (27 KB at D = 128, Fh = 64) for a third, so two tiles
  // load while one computes.
  static constexpr int kStages = kGivenDl ? 3 : 2;
  static constexpr int kOwnL = kGivenDl ? 0 : kL;
  static constexpr int kBytes = (kStages * kStage + kW + kOwnL) * 2;
  static constexpr int kDxTiles = D / 16;  // dx n-tiles per warp (half the columns)
  // Given dl, two CTAs an SM (at most 128 registers a thread, 97 KB of
  // shared memory each at D = 128): twice the tiles in flight, and one CTA's
  // loads and stores run while the other waits at its barrier.
  static constexpr int kCtasPerSm = kGivenDl ? 2 : 1;
  static_assert(D == 64 || D == 128, "D");
};

template <int D, int FH, bool kGivenDl>
__global__ void __launch_bounds__(kThreads, (BCfg<D, FH, kGivenDl>::kCtasPerSm))
    HedgehogBwdKernel(const HedgehogBwdParams p) {
  using Cf = BCfg<D, FH, kGivenDl>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sw = reinterpret_cast<bf16*>(smem_raw);  // W_h^T [Fh][D]
  bf16* own_l = sw + Cf::kW;                     // dl [64][Fh] (computed)
  bf16* stages = own_l + Cf::kOwnL;              // [2][phi | d_phi | x] or [3][dl | x]
  const int h = blockIdx.y;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + h;
  const int64_t tiles_total = (p.length + kRows - 1) / kRows;
  const int64_t per_cta = (tiles_total + gridDim.x - 1) / gridDim.x;
  const int64_t first = blockIdx.x * per_cta;
  const int64_t last = std::min<int64_t>(tiles_total, first + per_cta);
  if (first >= last) return;  // the whole CTA: a range past the end
  const int64_t row0 = bh * p.length;  // the (b, h)'s first row
  const bf16* phi = kGivenDl ? nullptr : static_cast<const bf16*>(p.phi) + row0 * 2 * FH;
  const bf16* d_phi = kGivenDl ? nullptr : static_cast<const bf16*>(p.d_phi) + row0 * 2 * FH;
  const bf16* given_dl = kGivenDl ? static_cast<const bf16*>(p.dl) + row0 * FH : nullptr;
  const bf16* x = static_cast<const bf16*>(p.x) + row0 * D;
  const bf16* d_pass =
      p.d_pass != nullptr ? static_cast<const bf16*>(p.d_pass) + row0 * D : nullptr;
  bf16* d_x = static_cast<bf16*>(p.d_x);  // null: dW alone (given dl)
  if (d_x != nullptr) d_x += row0 * D;
  const auto issue = [&](int64_t tile) {
    bf16* st = stages + int((tile - first) % Cf::kStages) * Cf::kStage;
    const int64_t start = tile * kRows;
    if constexpr (kGivenDl) {
      tiles::LoadTile<bf16, kRows, FH, kThreads>(st, Cf::SL, 0, given_dl, start, p.length);
    } else {
      tiles::LoadTile<bf16, kRows, 2 * FH, kThreads>(st, Cf::SF, 0, phi, start, p.length);
      tiles::LoadTile<bf16, kRows, 2 * FH, kThreads>(st + Cf::kF, Cf::SF, 0, d_phi, start,
                                                     p.length);
    }
    tiles::LoadTile<bf16, kRows, D, kThreads>(st + Cf::kIn, Cf::SD, 0, x, start, p.length);
    tiles::CpAsyncCommit();
  };

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * (warp & 3), c0 = (warp >> 2) * (D / 2);  // the warp's dx block
  // W^T: dx's alone.
  if (d_x != nullptr) {
    tiles::LoadTile<bf16, FH, D, kThreads>(
        sw, Cf::SD, 0, static_cast<const bf16*>(p.weight_t) + int64_t(h) * FH * D, 0, FH);
  }
  for (int64_t tile = first; tile < first + Cf::kStages - 1 && tile < last; ++tile) issue(tile);
  // dW: warp w owns rows 16 w (D = 128) or 16 (w & 3) of d, columns: all of
  // Fh (D = 128) or half of them (D = 64).
  constexpr int kDwN = D == 128 ? FH / 8 : FH / 16;
  const int dw_m = D == 128 ? 16 * warp : 16 * (warp & 3);
  const int dw_n = D == 128 ? 0 : (warp >> 2) * (FH / 2);
  float dw[kDwN][4] = {};
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t start = tile * kRows;
    const bf16* st = stages + int((tile - first) % Cf::kStages) * Cf::kStage;
    const bf16* sx = st + Cf::kIn;
    const bf16* sl = kGivenDl ? st : own_l;
    // The tile's group landed (the next one may still be in flight).
    if constexpr (Cf::kStages == 3) {
      if (tile + 1 < last) {
        tiles::CpAsyncWaitGroup<1>();
      } else {
        tiles::CpAsyncWaitAll();
      }
    } else {
      tiles::CpAsyncWaitAll();
    }
    __syncthreads();  // tile landed; every warp is done with the previous one (its stage)
    if (tile + Cf::kStages - 1 < last) issue(tile + Cf::kStages - 1);
    // The passed-through gradient at the warp's dx places, loaded meanwhile.
    uint32_t pass[Cf::kDxTiles][2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = start + r0 + g + 8 * half;
      const bool valid = d_x != nullptr && d_pass != nullptr && row < p.length;
#pragma unroll
      for (int j = 0; j < Cf::kDxTiles; ++j) {
        pass[j][half] =
            valid ? *reinterpret_cast<const uint32_t*>(d_pass + row * D + c0 + 8 * j + 2 * t)
                  : 0u;
      }
    }
    if constexpr (!kGivenDl) {  // dl: four threads a row, kFq columns of each half each
      const bf16* sp = st;
      const bf16* sdp = st + Cf::kF;
      constexpr int kFq = FH / 4;  // dl columns per thread (a quarter row)
      const int row = threadIdx.x >> 2, q0 = (threadIdx.x & 3) * kFq;
      float pv[kFq], dpv[kFq], nv[kFq], dnv[kFq];
      float dot_p = 0.f, dot_n = 0.f;
#pragma unroll
      for (int e = 0; e < kFq; e += 2) {
        const float2 a = tiles::Unpack(*reinterpret_cast<const uint32_t*>(sp + row * Cf::SF + q0 + e));
        const float2 b =
            tiles::Unpack(*reinterpret_cast<const uint32_t*>(sdp + row * Cf::SF + q0 + e));
        const float2 c =
            tiles::Unpack(*reinterpret_cast<const uint32_t*>(sp + row * Cf::SF + FH + q0 + e));
        const float2 d =
            tiles::Unpack(*reinterpret_cast<const uint32_t*>(sdp + row * Cf::SF + FH + q0 + e));
        pv[e] = a.x, pv[e + 1] = a.y, dpv[e] = b.x, dpv[e + 1] = b.y;
        nv[e] = c.x, nv[e + 1] = c.y, dnv[e] = d.x, dnv[e + 1] = d.y;
        dot_p += a.x * b.x + a.y * b.y;
        dot_n += c.x * d.x + c.y * d.y;
      }
#pragma unroll
      for (int off = 1; off < 4; off <<= 1) {
        dot_p += __shfl_xor_sync(0xffffffffu, dot_p, off);
        dot_n += __shfl_xor_sync(0xffffffffu, dot_n, off);
      }
#pragma unroll
      for (int e = 0; e < kFq; e += 2) {
        *reinterpret_cast<uint32_t*>(own_l + row * Cf::SL + q0 + e) =
            tiles::Pack(pv[e] * (dpv[e] - dot_p) - nv[e] * (dnv[e] - dot_n),
                        pv[e + 1] * (dpv[e + 1] - dot_p) - nv[e + 1] * (dnv[e + 1] - dot_n));
      }
      __syncthreads();  // dl complete
    }

    // dW[d][f] += sum over the tile's rows of x[r][d] dl[r][f].
#pragma unroll
    for (int k0 = 0; k0 < kRows; k0 += 16) {
      uint32_t a[4];
      tiles::LoadAT(a, sx, Cf::SD, dw_m, k0);
#pragma unroll
      for (int j = 0; j < kDwN; j += 2) {
        uint32_t b[4];
        tiles::LoadB2T(b, sl, Cf::SL, dw_n + 8 * j, k0);
        tiles::Mma(dw[j], a, b[0], b[1]);
        tiles::Mma(dw[j + 1], a, b[2], b[3]);
      }
    }
    if (d_x != nullptr) {  // dx = d_pass + dl W^T: rows r0.., columns c0..
      float acc[Cf::kDxTiles][4] = {};
      tiles::RowBlockTimesRows<FH>(acc, sl, Cf::SL, r0, sw, Cf::SD, c0);
      // Out through the tile's x rows (every warp is done with them after
      // the barrier) in whole 16-byte stores: the quads' 4-byte stores wrote
      // half a sector an instruction.
      bf16* so = const_cast<bf16*>(sx);
      __syncthreads();
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = r0 + g + 8 * half;
#pragma unroll
        for (int j = 0; j < Cf::kDxTiles; ++j) {
          const float2 add = tiles::Unpack(pass[j][half]);
          *reinterpret_cast<uint32_t*>(so + r * Cf::SD + c0 + 8 * j + 2 * t) =
              tiles::Pack(acc[j][2 * half] + add.x, acc[j][2 * half + 1] + add.y);
        }
      }
      __syncthreads();
      constexpr int kVecs = D / 8;  // 16-byte vectors a row
      for (int i = threadIdx.x; i < kRows * kVecs; i += kThreads) {
        const int r = i / kVecs, c = 8 * (i % kVecs);
        if (start + r < p.length) {
          *reinterpret_cast<uint4*>(d_x + (start + r) * D + c) =
              *reinterpret_cast<const uint4*>(so + r * Cf::SD + c);
        }
      }
    }
  }
  float* dw_h = p.d_weight + int64_t(h) * D * FH;
#pragma unroll
  for (int j = 0; j < kDwN; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int d = dw_m + g + 8 * (e >> 1);
      const int f = dw_n + 8 * j + 2 * t + (e & 1);
      atomicAdd(dw_h + d * FH + f, dw[j][e]);
    }
  }
}

template <int D, int FH, bool kGivenDl>
const char* Launch(const HedgehogBwdParams& p) {
  using Cf = BCfg<D, FH, kGivenDl>;
  cudaError_t err = cudaFuncSetAttribute(HedgehogBwdKernel<D, FH, kGivenDl>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, Cf::kBytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  // One wave, each CTA a range of one (b, h)'s tiles: kCtasPerSm CTAs an SM
  // with dx; dW alone (LoLCATs' fold) one, as measured (274 against 283 us
  // at two, session 36).
  const int64_t tiles_total = (p.length + kRows - 1) / kRows;
  const int64_t ctas_per_sm = p.d_x != nullptr ? Cf::kCtasPerSm : 1;
  const int64_t per_bh = int64_t(p.sm_count) * ctas_per_sm / (p.batch * p.heads);
  const dim3 grid(static_cast<unsigned>(std::clamp<int64_t>(per_bh, 1, tiles_total)),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  HedgehogBwdKernel<D, FH, kGivenDl>
      <<<grid, kThreads, Cf::kBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <bool kGivenDl>
const char* LaunchFor(const HedgehogBwdParams& p) {
  if (p.head_dim == 128) {
    return p.half_features == 64 ? Launch<128, 64, kGivenDl>(p) : Launch<128, 32, kGivenDl>(p);
  }
  return p.half_features == 64 ? Launch<64, 64, kGivenDl>(p) : Launch<64, 32, kGivenDl>(p);
}

}  // namespace

bool HedgehogBwdSupported(const HedgehogBwdParams& p) {
  return (p.half_features == 32 || p.half_features == 64) &&
         (p.head_dim == 64 || p.head_dim == 128) && p.batch >= 1 && p.batch <= 65535 &&
         p.heads >= 1 && p.heads <= 65535 && p.length >= 1;
}

const char* LaunchHedgehogBwd(const HedgehogBwdParams& p) {
  if (!HedgehogBwdSupported(p)) return "Hedgehog backward: unsupported sizes";
  const bool given = p.dl != nullptr;
  if (!(p.x && p.weight_t && (given || (p.phi && p.d_phi)) && (given || p.d_x) && p.d_weight)) {
    return "Hedgehog backward: missing tensors";
  }
  if (p.d_x == nullptr && p.d_pass != nullptr) return "Hedgehog backward: d_pass without d_x";
  return given ? LaunchFor<true>(p) : LaunchFor<false>(p);
}

}  // namespace linearize::kernels
