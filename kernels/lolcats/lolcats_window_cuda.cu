// Sliding-window softmax terms of both hybrids on tensor cores, combined with
// the precomputed linear terms: under one normaliser (LoLCATs) or each
// normalised on its own, with sinks (Lizard). A CTA (kRows / 16 warps, 16
// query rows each) takes a chunk of kRows queries of one (b, h) at a time:
// 64 for windows W <= 64, 128 for Lizard's longer ones (bf16, W <= 128).
// Its band is the chunk's keys and the kRows before them; a warp scores
// only the kRows + 16 band keys its rows can see (from its first row on),
// takes the exact window max c_i, and keeps the weights exp(s - c_i) in
// registers as the A operand of the value product (no shared-memory round
// trip).
//
// bf16, a CTA walks consecutive chunks of one (b, h) (chunks_per_cta,
// planned from the device's size): the band's two kRows-row key and value
// tiles are slots, and chunk n + 1's rows replace chunk n - 1's while chunk
// n computes (q and keys after its scores, values after its value products,
// linear terms after its epilogue). Each row then crosses L2 once instead
// of two or three times: the kernel was L2-bound (L2 at 80-87% of peak, DRAM
// at 60%); walking, it moves 83% of DRAM's rate (ncu at 32k, 575 -> 499 us;
// session 23). Lizard's W <= 128 took a 64-query chunk against a 192-key
// band, one chunk a CTA, until session 37: its rows crossed L2 three times.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/linear_attention/chunk_plan.h"
#include "kernels/linear_attention/occupancy.cuh"
#include "kernels/linear_attention/tile_mma.cuh"
#include "kernels/linear_attention/window_mask.cuh"
#include "kernels/lolcats/lolcats_window_params.h"

namespace linearize::kernels {
namespace {

using tiles::bf16;
constexpr int kMaxSinks = 8;

// LT: the linear terms' element type; bf16 terms go through shared memory.
// float32 inputs (T) go as bf16 hi / lo planes, one chunk a CTA.
template <typename T, int D, int kRows, typename LT>
struct WCfg {
  static constexpr bool kSplit = std::is_same_v<T, float>;
  static constexpr bool kWalk = !kSplit;
  static constexpr int kPlanes = kSplit ? 2 : 1;
  static constexpr int kThreads = 2 * kRows;  // a warp per 16 rows
  static constexpr int SD = tiles::Stride(D);
  static constexpr int kQ = kRows * SD;
  static constexpr int kK = 2 * kRows * SD;  // the band
  static constexpr bool kLinShared = !kSplit && std::is_same_v<LT, tiles::bf16>;
  static constexpr int kBytes = (kPlanes * (kQ + 2 * kK) + (kLinShared ? kQ : 0)) * 2;
  // 8-key band tiles a warp scores, from its first row's band position on:
  // its rows r0 .. r0 + 15 see keys up to r0 + 15 + kRows (W <= kRows).
  static constexpr int kSeen = kRows / 8 + 2;
};

// Two consecutive linear-term elements as loaded: float2, or two bf16 in
// one register (half the registers while they wait for the epilogue).
template <typename LT>
using LinPair = std::conditional_t<std::is_same_v<LT, float>, float2, __nv_bfloat162>;
__device__ __forceinline__ float2 ToFloat2(float2 x) { return x; }
__device__ __forceinline__ float2 ToFloat2(__nv_bfloat162 x) { return __bfloat1622float2(x); }

// LT: lin_num's element type. bf16 (Cf::kWalk): the CTA takes
// p.chunks_per_cta consecutive chunks; float32: one.
template <typename T, int D, int kRows, typename LT>
__global__ void __launch_bounds__(2 * kRows) LolcatsWindowKernel(const LolcatsWindowParams p) {
  using Cf = WCfg<T, D, kRows, LT>;
  constexpr int kThreads = Cf::kThreads;
  constexpr int kBefore = kRows;         // keys before the chunk in the band
  constexpr int kSlot = kRows * Cf::SD;  // a kRows-row tile of the band
  constexpr bool S = Cf::kSplit, kWalk = Cf::kWalk;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  bf16* sv = sk + Cf::kPlanes * Cf::kK;
  bf16* sq = sv + Cf::kPlanes * Cf::kK;
  bf16* s_lin = sq + Cf::kQ;  // the bf16 linear terms (kLinShared)
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.heads / p.kv_heads);
  const int64_t bh = b * p.heads + h;
  const T* q = static_cast<const T*>(p.q) + bh * p.length * D;
  const T* k = static_cast<const T*>(p.k) + (b * p.kv_heads + hk) * p.length * D;
  const T* v = static_cast<const T*>(p.v) + (b * p.kv_heads + hk) * p.length * D;
  const int64_t walk = kWalk ? p.chunks_per_cta : 1;
  const int64_t n_first = blockIdx.x * walk;
  // One chunk unless walking: a loop of one the compiler sees through.
  const int64_t n_end = kWalk ? min(n_first + walk, (p.length + kRows - 1) / kRows) : n_first + 1;
  // The bf16 linear terms of the chunk at q0 into s_lin (kLinShared).
  const auto load_lin_terms = [&](int64_t q0) {
    if (p.lin_num == nullptr) return;
    tiles::LoadTile<bf16, kRows, D, kThreads>(
        s_lin, Cf::SD, 0, static_cast<const bf16*>(p.lin_num) + bh * p.length * D, q0, p.length);
  };
  {
    // The first chunk's tiles; a walk commits them in three groups (q and
    // keys, values, linear terms), waited for as the chunk needs them.
    const int64_t q0 = n_first * kRows, k0 = q0 - kBefore;  // band row u holds key k0 + u
    tiles::LoadTile<T, kRows, D, kThreads>(sq, Cf::SD, Cf::kQ, q, q0, p.length);
    tiles::LoadTile<T, 2 * kRows, D, kThreads>(sk, Cf::SD, Cf::kK, k, k0, p.length);
    if constexpr (kWalk) tiles::CpAsyncCommit();
    tiles::LoadTile<T, 2 * kRows, D, kThreads>(sv, Cf::SD, Cf::kK, v, k0, p.length);
    if constexpr (kWalk) tiles::CpAsyncCommit();
    if constexpr (Cf::kLinShared) load_lin_terms(q0);
    tiles::CpAsyncCommit();
  }

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;  // the warp's first row, and its first scored band key
  // The linear terms of the thread's output elements. bf16 terms go by
  // cp.async into shared memory, a walk's next chunk's after this one's
  // epilogue (as register loads they stalled the warps; ncu, session 22).
  // float32 terms load early into registers with 64-row chunks; with
  // 128-row ones and with the float32 split planes (no registers to spare
  // before), at the end.
  enum LinAt { kLinFirst, kLinShared, kLinLast };
  constexpr LinAt kLinAt = Cf::kLinShared ? kLinShared : S || kRows > 64 ? kLinLast : kLinFirst;
  constexpr bool kPrefetch = kLinAt == kLinFirst;
  // The per-head scalars (the sinks are read again, from cache, where their
  // exponentials are formed: fewer live registers).
  const bool lizard = p.sinks != nullptr;
  const float gate = lizard ? 1.f : p.gate[h];
  const int m_count = lizard ? static_cast<int>(p.sink_count) : 0;
  const float* sinks = lizard ? p.sinks + h * m_count : nullptr;
  float sink_max = -INFINITY;  // the loads issued together, not one after another
#pragma unroll
  for (int m = 0; m < kMaxSinks; ++m) {
    sink_max = fmaxf(sink_max, m < m_count ? sinks[m] : -INFINITY);
  }
  const int w = static_cast<int>(p.window);
  // The warp's tile j holds band keys r0 + 8 j .. r0 + 8 j + 7; its rows see
  // the tiles from lo_tile on (the same for every warp). Pair jp: tiles 2 jp
  // and 2 jp + 1, 16 keys in one slot.
  const int lo_tile = (kBefore + 1 - w) / 8;
  const auto pair_seen = [&](int jp) { return 2 * jp + 1 >= lo_tile; };
  const float c2 = p.scale * window::kLog2e;

  for (int64_t n = n_first; n < n_end; ++n) {
    const int64_t q0 = n * kRows;
    const bool more = kWalk && n + 1 < n_end;
    // The band's kRows-row tiles: in a walk chunk n's keys and values are in
    // slot (n - n_first + 1) & 1, chunk n - 1's in the other.
    const int parity = kWalk ? static_cast<int>((n - n_first) & 1) : 0;
    const auto slot = [&](bf16* base, int part) {
      return base + (kWalk ? (parity + part) & 1 : part) * kSlot;
    };
    const auto lin_den_of = [&](int half) {
      const int64_t i = q0 + r0 + g + 8 * half;
      return i < p.length && p.lin_den != nullptr ? p.lin_den[bh * p.length + i] : 0.f;
    };
    const auto lin_terms = [&](int half, LinPair<LT>(&num)[D / 8], float& den) {
      const int64_t i = q0 + r0 + g + 8 * half;
      const int64_t row = bh * p.length + i;
      den = lin_den_of(half);
      const bool live = i < p.length && p.lin_num != nullptr;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        num[j] = live ? static_cast<const LinPair<LT>*>(p.lin_num)[(row * D + 8 * j + 2 * t) / 2]
                      : LinPair<LT>{};
      }
    };
    LinPair<LT> lin_num[kPrefetch ? 2 : 1][D / 8];
    float lin_den[2];
    if constexpr (kLinAt == kLinFirst) {
      lin_terms(0, lin_num[0], lin_den[0]);
      lin_terms(1, lin_num[1], lin_den[1]);
    }
    if constexpr (kLinAt == kLinShared) {
      lin_den[0] = lin_den_of(0);
      lin_den[1] = lin_den_of(1);
    }
    if (!kWalk || n == n_first) {
      if constexpr (kWalk) {
        tiles::CpAsyncWaitGroup<2>();  // q and keys (values and linear terms may be in flight)
      } else {
        tiles::CpAsyncWaitAll();
      }
      __syncthreads();
    }

    float s[Cf::kSeen][4] = {};
#pragma unroll
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t ah[4], al[4] = {};
      tiles::LoadA(ah, sq, Cf::SD, r0, kk);
      if constexpr (S) tiles::LoadA(al, sq + Cf::kQ, Cf::SD, r0, kk);
#pragma unroll
      for (int jp = 0; jp < Cf::kSeen / 2; ++jp) {
        if (pair_seen(jp)) {
          const int u = r0 + 16 * jp;
          const bf16* keys = slot(sk, u / kRows);
          uint32_t bh4[4], bl4[4] = {};
          tiles::LoadB2(bh4, keys, Cf::SD, u % kRows, kk);
          if constexpr (S) tiles::LoadB2(bl4, keys + Cf::kK, Cf::SD, u % kRows, kk);
          tiles::Mma3<S>(s[2 * jp], ah, al, bh4[0], bh4[1], bl4[0], bl4[1]);
          tiles::Mma3<S>(s[2 * jp + 1], ah, al, bh4[2], bh4[3], bl4[2], bl4[3]);
        }
      }
    }
    if constexpr (kWalk) {
      tiles::CpAsyncWaitGroup<1>();  // chunk n's values (its linear terms may be in flight)
      __syncthreads();               // and every warp is done with q and chunk n - 1's keys
      if (more) {
        tiles::LoadTile<T, kRows, D, kThreads>(sq, Cf::SD, 0, q, q0 + kRows, p.length);
        tiles::LoadTile<T, kRows, D, kThreads>(slot(sk, 0), Cf::SD, 0, k, q0 + kRows, p.length);
      }
      tiles::CpAsyncCommit();
    }
    // Mask to the window, exact max per row (with the sinks), weights
    // exp(s - c) (the gate g multiplies the sums in the epilogue). Only the
    // tile pairs the warp's rows can see: the others stay unread.
    float den[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = g + 8 * half;  // in the warp's 16; band key r0 + x is kBefore + row - x back
      const window::RowLimit sees(q0 + r0 + row, w);
      float mx = -INFINITY;  // of the unscaled scores
#pragma unroll
      for (int jp = 0; jp < Cf::kSeen / 2; ++jp) {
        if (!pair_seen(jp)) continue;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = 2 * jp + e / 2, x_key = 8 * j + 2 * t + (e & 1);
          float& x = s[j][2 * half + (e & 1)];
          x = sees.Sees(kBefore + row - x_key) ? x : -INFINITY;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float b = window::Exp2Offset(fmaxf(mx * p.scale, sink_max));
      float sum = 0.f;
#pragma unroll
      for (int jp = 0; jp < Cf::kSeen / 2; ++jp) {
        if (!pair_seen(jp)) continue;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float& x = s[2 * jp + e / 2][2 * half + (e & 1)];
          x = window::Exp2(fmaf(x, c2, -b));
          sum += x;
        }
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
#pragma unroll
      for (int m = 0; m < kMaxSinks; ++m) {
        sum += m < m_count ? window::Exp2(fmaf(sinks[m], window::kLog2e, -b)) : 0.f;
      }
      den[half] = sum;
    }
    // num = weights (registers, as A fragments) x the band's values.
    float o[D / 8][4] = {};
#pragma unroll
    for (int jp = 0; jp < Cf::kSeen / 2; ++jp) {
      if (pair_seen(jp)) {
        const int u = r0 + 16 * jp;
        const bf16* values = slot(sv, u / kRows);
        uint32_t ah[4], al[4] = {};
        tiles::CToA<S>(s[2 * jp], s[2 * jp + 1], ah, al);
#pragma unroll
        for (int j = 0; j < D / 8; j += 2) {
          uint32_t bh4[4], bl4[4] = {};
          tiles::LoadB2T(bh4, values, Cf::SD, 8 * j, u % kRows);
          if constexpr (S) tiles::LoadB2T(bl4, values + Cf::kK, Cf::SD, 8 * j, u % kRows);
          tiles::Mma3<S>(o[j], ah, al, bh4[0], bh4[1], bl4[0], bl4[1]);
          tiles::Mma3<S>(o[j + 1], ah, al, bh4[2], bh4[3], bl4[2], bl4[3]);
        }
      }
    }
    if constexpr (kWalk) {
      tiles::CpAsyncWaitGroup<1>();  // chunk n's linear terms (n + 1's q and keys may be in flight)
      __syncthreads();               // and every warp is done with chunk n - 1's values
      if (more) {
        tiles::LoadTile<T, kRows, D, kThreads>(slot(sv, 0), Cf::SD, 0, v, q0 + kRows, p.length);
      }
      tiles::CpAsyncCommit();
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t i = q0 + r0 + g + 8 * half;
      if (i >= p.length) continue;
      const int64_t row = bh * p.length + i;
      LinPair<LT>(&ln)[D / 8] = lin_num[kPrefetch ? half : 0];
      if constexpr (kLinAt == kLinLast) lin_terms(half, ln, lin_den[half]);
      if constexpr (kLinAt == kLinShared) {  // landed: waited for above
        const bf16* row_terms = s_lin + (r0 + g + 8 * half) * Cf::SD + 2 * t;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          ln[j] = p.lin_num != nullptr ? *reinterpret_cast<const LinPair<LT>*>(row_terms + 8 * j)
                                       : LinPair<LT>{};
        }
      }
      const float ld = lin_den[half];
      // LoLCATs: (g o + lin_num) / (g den + lin_den); Lizard: lin_num /
      // (lin_den + eps) + alpha o / den (lin_num + alpha o / den when lin_num
      // is the gated branch's output). Without linear terms lin_num / lin_den
      // are 0.
      const float g_den = gate * den[half];
      const float inv = lizard ? p.alpha[h] / den[half] : gate / (g_den + ld);
      const float lin_scale = !lizard                ? 1.f / (g_den + ld)
                              : p.lin_num == nullptr ? 0.f
                              : p.lin_normalised     ? 1.f
                                                     : 1.f / (ld + p.eps);
      if (t == 0 && p.row_den != nullptr) p.row_den[row] = g_den + ld;
      T* y = static_cast<T*>(p.y) + row * D;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        const int col = 8 * j + 2 * t;
        const float2 l = ToFloat2(ln[j]);
        tiles::StoreOut2(y + col, fmaf(l.x, lin_scale, o[j][2 * half] * inv),
                         fmaf(l.y, lin_scale, o[j][2 * half + 1] * inv));
        if (lizard && p.y_window != nullptr) {
          const float inv_den = 1.f / den[half];
          tiles::StoreOut2(static_cast<T*>(p.y_window) + row * D + col, o[j][2 * half] * inv_den,
                           o[j][2 * half + 1] * inv_den);
        }
      }
    }
    if (more) {                      // (a walk's last chunk has nothing left to wait for)
      tiles::CpAsyncWaitGroup<1>();  // n + 1's q and keys (its values may be in flight)
      __syncthreads();               // and every warp is done with chunk n's linear terms
      if constexpr (Cf::kLinShared) load_lin_terms(q0 + kRows);
      tiles::CpAsyncCommit();
    }
  }
}

template <typename T, int D, int kRows, typename LT>
const char* LaunchChunks(const LolcatsWindowParams& p) {
  using Cf = WCfg<T, D, kRows, LT>;
  const auto kernel = LolcatsWindowKernel<T, D, kRows, LT>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cf::kBytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  LolcatsWindowParams run = p;
  const int64_t chunks = (p.length + kRows - 1) / kRows;
  if (!Cf::kWalk) {
    run.chunks_per_cta = 1;
  } else if (run.chunks_per_cta > chunks) {
    run.chunks_per_cta = chunks;
  } else if (run.chunks_per_cta <= 0) {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    const int64_t slots = int64_t(std::max(sms, 1)) * CtasPerSm(kernel, Cf::kThreads, Cf::kBytes);
    run.chunks_per_cta = PlanWalkChunks(chunks, p.batch * p.heads, slots);
  }
  const dim3 grid(static_cast<unsigned>((chunks + run.chunks_per_cta - 1) / run.chunks_per_cta),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  kernel<<<grid, Cf::kThreads, Cf::kBytes, static_cast<cudaStream_t>(p.stream)>>>(run);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// 64-query chunks for W <= 64; 128-query ones beyond (bf16 only: Supported).
template <typename T, int D, typename LT>
const char* LaunchFor(const LolcatsWindowParams& p) {
  return p.window <= 64 ? LaunchChunks<T, D, 64, LT>(p) : LaunchChunks<T, D, 128, LT>(p);
}

template <typename T, int D>
const char* Launch(const LolcatsWindowParams& p) {
  if constexpr (std::is_same_v<T, float>) {
    return LaunchChunks<T, D, 64, float>(p);  // W <= 64, float32 lin_num (Supported)
  } else {
    return p.lin_num_bf16 ? LaunchFor<T, D, bf16>(p) : LaunchFor<T, D, float>(p);
  }
}

}  // namespace

bool LolcatsWindowSizesSupported(const LolcatsWindowParams& p, bool lizard) {
  const int64_t max_window = lizard && p.type == ElementType::kBF16 ? 128 : 64;
  return (p.head_dim == 64 || p.head_dim == 128) && p.window >= 1 && p.window <= max_window &&
         (!lizard || (p.sink_count >= 1 && p.sink_count <= kMaxSinks)) &&
         (p.type == ElementType::kF32 || p.type == ElementType::kBF16) && p.batch >= 1 &&
         p.batch <= 65535 && p.heads >= 1 && p.heads <= 65535 && p.kv_heads >= 1 &&
         p.heads % p.kv_heads == 0 && p.length >= 1 && p.chunks_per_cta >= 0;
}

bool LolcatsWindowSupported(const LolcatsWindowParams& p) {
  const bool lizard = p.sinks != nullptr || p.sink_count > 0;
  return (!lizard || (p.sinks != nullptr && p.alpha != nullptr)) &&
         (p.type == ElementType::kBF16 || !p.lin_num_bf16) &&
         LolcatsWindowSizesSupported(p, lizard);
}

const char* LaunchLolcatsWindow(const LolcatsWindowParams& p) {
  if (!LolcatsWindowSupported(p)) return "LolcatsWindow: unsupported sizes or element type";
  if (p.sinks == nullptr && p.gate == nullptr) return "LolcatsWindow: no gate (LoLCATs) or sinks";
  const bool f32 = p.type == ElementType::kF32;
  if (p.head_dim == 64) return f32 ? Launch<float, 64>(p) : Launch<bf16, 64>(p);
  return f32 ? Launch<float, 128>(p) : Launch<bf16, 128>(p);
}

}  // namespace linearize::kernels
