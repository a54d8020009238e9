// Sliding-window softmax terms of both hybrids on tensor cores, combined with
// the precomputed linear terms: under one normaliser (LoLCATs) or each
// normalised on its own, with sinks (Lizard). A CTA (4 warps, 16 query rows
// each) takes a 64-query chunk of one (b, h) at a time: scores against a
// band of the current chunk and the 64 (W <= 64) or 128 (W <= 128, bf16:
// the float32 split planes would not fit in shared memory) keys before it,
// exact window max c_i, weights exp(s - c_i) kept in registers as the A
// operand of the value product (no shared-memory round trip). The 192-key
// band keeps q in the value tile's first 64 rows, whose values load once the
// scores are done (and the bf16 linear terms into the key tile): 104 KB of
// shared memory, two CTAs per SM instead of one; the 128-key band gives bf16
// linear terms a tile of their own (104 KB too).
//
// bf16 with the 128-key band, a CTA walks consecutive chunks of one (b, h)
// (chunks_per_cta, planned from the device's size): the band's two 64-row
// key and value tiles are slots, and chunk n + 1's rows replace chunk
// n - 1's while chunk n computes (q and keys after its scores, values
// after its value products, linear terms after its epilogue). Each row then
// crosses L2 once instead of two or three times: the kernel was L2-bound
// (L2 at 80-87% of peak, DRAM at 60%); walking, it moves 83% of DRAM's
// rate (ncu at 32k, 575 -> 499 us; session 23). On the 128-key band a warp
// scores only the 80 keys its rows can see, from its first row on (session
// 37: 228 -> 168 registers, 6% fewer instructions). 128-query chunks that
// walk a 256-key band (8 warps, one CTA an SM at 204 KB) instead of the
// 192-key band halved its L2 traffic but took 966 us against 871 at 32k
// (session 37: the SM waits, at 12% occupancy, with one CTA's barriers).
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
constexpr int kC = 64;
constexpr int kThreads = 128;
constexpr int kMaxSinks = 8;

// LT: the linear terms' element type; bf16 terms go through shared memory.
template <typename T, int D, int kBand, typename LT>
struct WCfg {
  static constexpr bool kSplit = std::is_same_v<T, float>;
  static constexpr int kPlanes = kSplit ? 2 : 1;
  static constexpr int SD = tiles::Stride(D);
  static constexpr int kQ = kC * SD;
  static constexpr int kK = kBand * SD;
  static constexpr bool kQInV = !kSplit && kBand > 2 * kC;
  static constexpr bool kLinShared = !kSplit && std::is_same_v<LT, tiles::bf16>;
  // The terms' own tile after q's, unless they go into the keys' place.
  static constexpr int kLin = kLinShared && !kQInV ? kQ : 0;
  static constexpr int kBytes = (kPlanes * ((kQInV ? 0 : kQ) + 2 * kK) + kLin) * 2;
  // The score tiles a warp holds: the 80 band keys its rows see (W <= 64),
  // or, with q in the value tile, the whole band (the late values' order
  // and barrier need each tile's place known at compile time).
  using Tiles = window::WarpBandTiles<kBand - kC, kBand, !kQInV>;
};

// Two consecutive linear-term elements as loaded: float2, or two bf16 in
// one register (half the registers while they wait for the epilogue).
template <typename LT>
using LinPair = std::conditional_t<std::is_same_v<LT, float>, float2, __nv_bfloat162>;
__device__ __forceinline__ float2 ToFloat2(float2 x) { return x; }
__device__ __forceinline__ float2 ToFloat2(__nv_bfloat162 x) { return __bfloat1622float2(x); }

// LT: lin_num's element type. kWalk: the CTA takes p.chunks_per_cta
// consecutive chunks (bf16, 128-key band); else one.
template <typename T, int D, int kBand, typename LT, bool kWalk>
__global__ void __launch_bounds__(kThreads) LolcatsWindowKernel(const LolcatsWindowParams p) {
  using Cf = WCfg<T, D, kBand, LT>;
  constexpr int kBefore = kBand - kC;  // keys before the chunk in the band
  constexpr int kSlot = kC * Cf::SD;   // a 64-row tile of the band
  constexpr bool S = Cf::kSplit;
  static_assert(!kWalk || (!S && kBand == 2 * kC), "walks take bf16 and the 128-key band");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  bf16* sv = sk + Cf::kPlanes * Cf::kK;
  bf16* sq = Cf::kQInV ? sv : sv + Cf::kPlanes * Cf::kK;
  bf16* s_lin = Cf::kQInV ? sk : sq + Cf::kQ;  // the bf16 linear terms (kLinShared)
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.heads / p.kv_heads);
  const int64_t bh = b * p.heads + h;
  const T* q = static_cast<const T*>(p.q) + bh * p.length * D;
  const T* k = static_cast<const T*>(p.k) + (b * p.kv_heads + hk) * p.length * D;
  const T* v = static_cast<const T*>(p.v) + (b * p.kv_heads + hk) * p.length * D;
  const int64_t walk = kWalk ? p.chunks_per_cta : 1;
  const int64_t n_first = blockIdx.x * walk;
  // One chunk unless walking: a loop of one the compiler sees through.
  const int64_t n_end = kWalk ? min(n_first + walk, (p.length + kC - 1) / kC) : n_first + 1;
  // The bf16 linear terms of the chunk at q0 into s_lin (kLinShared).
  const auto load_lin_terms = [&](int64_t q0) {
    if (p.lin_num == nullptr) return;
    tiles::LoadTile<bf16, kC, D, kThreads>(
        s_lin, Cf::SD, 0, static_cast<const bf16*>(p.lin_num) + bh * p.length * D, q0, p.length);
  };
  {
    // The first chunk's tiles; a walk commits them in three groups (q and
    // keys, values, linear terms), waited for as the chunk needs them.
    const int64_t q0 = n_first * kC, k0 = q0 - kBefore;  // band row u holds key k0 + u
    tiles::LoadTile<T, kC, D, kThreads>(sq, Cf::SD, Cf::kQ, q, q0, p.length);
    tiles::LoadTile<T, kBand, D, kThreads>(sk, Cf::SD, Cf::kK, k, k0, p.length);
    if constexpr (Cf::kQInV) {  // band rows 64.. now, rows 0..63 (q's place) after the scores
      tiles::LoadTile<T, kBand - kC, D, kThreads>(sv + kC * Cf::SD, Cf::SD, Cf::kK, v, k0 + kC,
                                                  p.length);
    } else {
      if constexpr (kWalk) tiles::CpAsyncCommit();
      tiles::LoadTile<T, kBand, D, kThreads>(sv, Cf::SD, Cf::kK, v, k0, p.length);
      if constexpr (kWalk) tiles::CpAsyncCommit();
      if constexpr (Cf::kLinShared) load_lin_terms(q0);
    }
    tiles::CpAsyncCommit();
  }

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;
  // The linear terms of the thread's output elements. bf16 terms go by
  // cp.async into shared memory: with the tiles (128-key band, a tile of
  // their own; a walk's next chunk's after this one's epilogue) or into the
  // key tile once the scores are done (192-key band, with the late values);
  // as register loads they stalled the warps
  // (ncu, session 22). float32 terms load early into registers with the
  // 128-key band, midway through the value products with the 192-key one
  // (no registers to spare before); the float32 split planes load them at
  // the end.
  enum LinAt { kLinFirst, kLinMidway, kLinShared, kLinLast };
  constexpr LinAt kLinAt = S                 ? kLinLast
                           : Cf::kLinShared  ? kLinShared
                           : kBand <= 2 * kC ? kLinFirst
                                             : kLinMidway;
  constexpr bool kPrefetch = kLinAt == kLinFirst || kLinAt == kLinMidway;
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
  const typename Cf::Tiles band(r0, w);  // the warp's score tiles, and those its rows see
  constexpr int kTiles = Cf::Tiles::kCount;
  const float c2 = p.scale * window::kLog2e;

  for (int64_t n = n_first; n < n_end; ++n) {
    const int64_t q0 = n * kC, k0 = q0 - kBefore;
    const bool more = kWalk && n + 1 < n_end;
    // The band's 64-row tiles: in a walk chunk n's keys and values are in
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
    const auto prefetch_lin_terms = [&] {
      lin_terms(0, lin_num[0], lin_den[0]);
      lin_terms(1, lin_num[kPrefetch ? 1 : 0], lin_den[1]);
    };
    if constexpr (kLinAt == kLinFirst) prefetch_lin_terms();
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

    float s[kTiles][4] = {};
#pragma unroll
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t ah[4], al[4] = {};
      tiles::LoadA(ah, sq, Cf::SD, r0, kk);
      if constexpr (S) tiles::LoadA(al, sq + Cf::kQ, Cf::SD, r0, kk);
#pragma unroll
      for (int j = 0; j < kTiles; j += 2) {
        if (band.PairSeen(j / 2)) {
          const int u = 8 * (band.first + j);  // a 16-key pair, in one 64-row slot
          const bf16* keys = slot(sk, u / kC);
          uint32_t bh4[4], bl4[4] = {};
          tiles::LoadB2(bh4, keys, Cf::SD, u % kC, kk);
          if constexpr (S) tiles::LoadB2(bl4, keys + Cf::kK, Cf::SD, u % kC, kk);
          tiles::Mma3<S>(s[j], ah, al, bh4[0], bh4[1], bl4[0], bl4[1]);
          tiles::Mma3<S>(s[j + 1], ah, al, bh4[2], bh4[3], bl4[2], bl4[3]);
        }
      }
    }
    if constexpr (Cf::kQInV) {
      __syncthreads();  // every warp is done with q
      tiles::LoadTile<T, kC, D, kThreads>(sv, Cf::SD, Cf::kK, v, k0, p.length);
      if constexpr (kLinAt == kLinShared) load_lin_terms(q0);  // into the keys' place
      tiles::CpAsyncCommit();
    }
    if constexpr (kWalk) {
      tiles::CpAsyncWaitGroup<1>();  // chunk n's values (its linear terms may be in flight)
      __syncthreads();               // and every warp is done with q and chunk n - 1's keys
      if (more) {
        tiles::LoadTile<T, kC, D, kThreads>(sq, Cf::SD, 0, q, q0 + kC, p.length);
        tiles::LoadTile<T, kC, D, kThreads>(slot(sk, 0), Cf::SD, 0, k, q0 + kC, p.length);
      }
      tiles::CpAsyncCommit();
    }
    // Mask to the window, exact max per row (with the sinks), weights
    // exp(s - c) (the gate g multiplies the sums in the epilogue). Only the
    // tile pairs the warp's rows can see: the others stay unread.
    float den[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row =
          r0 + g + 8 * half;  // in the chunk; band key u is at distance kBefore + row - u
      const window::RowLimit sees(q0 + row, w);
      float mx = -INFINITY;  // of the unscaled scores
#pragma unroll
      for (int jp = 0; jp < kTiles / 2; ++jp) {
        if (!band.PairSeen(jp)) continue;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = 2 * jp + e / 2, u = 8 * (band.first + j) + 2 * t + (e & 1);
          float& x = s[j][2 * half + (e & 1)];
          x = sees.Sees(kBefore + row - u) ? x : -INFINITY;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float b = window::Exp2Offset(fmaxf(mx * p.scale, sink_max));
      float sum = 0.f;
#pragma unroll
      for (int jp = 0; jp < kTiles / 2; ++jp) {
        if (!band.PairSeen(jp)) continue;
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
    // num = weights (registers, as A fragments) x band values; with q in the
    // value tile, its late rows 0..63 last.
    float o[D / 8][4] = {};
#pragma unroll
    for (int step = 0; step < kTiles / 2; ++step) {
      constexpr int kLate = Cf::kQInV ? kC / 16 : 0;
      const int kk = (step + kLate) % (kTiles / 2);
      if (Cf::kQInV && step == kTiles / 2 - kLate) {
        tiles::CpAsyncWaitAll();
        __syncthreads();
      }
      if (kLinAt == kLinMidway && step == kBand / 32) prefetch_lin_terms();
      if (band.PairSeen(kk)) {
        const int u = 16 * kk + 8 * band.first;
        const bf16* values = slot(sv, u / kC);
        uint32_t ah[4], al[4] = {};
        tiles::CToA<S>(s[2 * kk], s[2 * kk + 1], ah, al);
#pragma unroll
        for (int j = 0; j < D / 8; j += 2) {
          uint32_t bh4[4], bl4[4] = {};
          tiles::LoadB2T(bh4, values, Cf::SD, 8 * j, u % kC);
          if constexpr (S) tiles::LoadB2T(bl4, values + Cf::kK, Cf::SD, 8 * j, u % kC);
          tiles::Mma3<S>(o[j], ah, al, bh4[0], bh4[1], bl4[0], bl4[1]);
          tiles::Mma3<S>(o[j + 1], ah, al, bh4[2], bh4[3], bl4[2], bl4[3]);
        }
      }
    }
    if constexpr (kWalk) {
      tiles::CpAsyncWaitGroup<1>();  // chunk n's linear terms (n + 1's q and keys may be in flight)
      __syncthreads();               // and every warp is done with chunk n - 1's values
      if (more) {
        tiles::LoadTile<T, kC, D, kThreads>(slot(sv, 0), Cf::SD, 0, v, q0 + kC, p.length);
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
      if constexpr (Cf::kLinShared) load_lin_terms(q0 + kC);
      tiles::CpAsyncCommit();
    }
  }
}

template <typename T, int D, int kBand, typename LT>
const char* LaunchBand(const LolcatsWindowParams& p) {
  using Cf = WCfg<T, D, kBand, LT>;
  constexpr bool kWalk = !Cf::kSplit && kBand == 2 * kC;
  const auto kernel = LolcatsWindowKernel<T, D, kBand, LT, kWalk>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cf::kBytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  LolcatsWindowParams run = p;
  const int64_t chunks = (p.length + kC - 1) / kC;
  if (!kWalk) {
    run.chunks_per_cta = 1;
  } else if (run.chunks_per_cta > chunks) {
    run.chunks_per_cta = chunks;
  } else if (run.chunks_per_cta <= 0) {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    const int64_t slots = int64_t(std::max(sms, 1)) * CtasPerSm(kernel, kThreads, Cf::kBytes);
    run.chunks_per_cta = PlanWalkChunks(chunks, p.batch * p.heads, slots);
  }
  const dim3 grid(static_cast<unsigned>((chunks + run.chunks_per_cta - 1) / run.chunks_per_cta),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  kernel<<<grid, kThreads, Cf::kBytes, static_cast<cudaStream_t>(p.stream)>>>(run);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename T, int D>
const char* Launch(const LolcatsWindowParams& p) {
  if constexpr (std::is_same_v<T, float>) {
    return LaunchBand<T, D, 2 * kC, float>(p);  // W <= 64, float32 lin_num (Supported)
  } else if (p.lin_num_bf16) {
    return p.window <= kC ? LaunchBand<T, D, 2 * kC, bf16>(p) : LaunchBand<T, D, 3 * kC, bf16>(p);
  } else {
    return p.window <= kC ? LaunchBand<T, D, 2 * kC, float>(p) : LaunchBand<T, D, 3 * kC, float>(p);
  }
}

}  // namespace

bool LolcatsWindowSizesSupported(const LolcatsWindowParams& p, bool lizard) {
  const int64_t max_window = lizard && p.type == ElementType::kBF16 ? 2 * kC : kC;
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
