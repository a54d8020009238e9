// Backward of the hybrids' sliding-window terms on tensor cores, bf16 inputs,
// W <= 128 (the math is in lolcats_window_bwd_params.h). Two kernels, 4 warps
// of 16 rows each, no atomics; kBand = 128 keys for W <= 64, else 192:
//   QueryKernel, one CTA per 64-query chunk, against the band of the chunk
//     and the kBand - 64 keys before it (as the forward): recomputes the
//     scores and the row max, then ds = a (dN v^T + dZ) (+ dc at the argmax)
//     one 16-key slice at a time, and d_q; writes c_i (and the argmax) for
//     the second kernel. The 192-key band streams its values 64 rows at a
//     time through two buffers, the second in q's place once the scores are
//     done (104 KB of shared memory, two CTAs per SM, against one with the
//     whole band's 140 KB);
//   KeyKernel, one CTA per 64-key chunk, against the kBand queries that can
//     see those keys (the chunk and the next ones), 32 at a time, their q and
//     dN rows streamed through two stages (72 KB of shared memory: two CTAs
//     per SM on the 192-key band, against one with the whole band's 140 KB):
//     recomputes s^T and t^T from c_i, then d_k = scale ds^T q and
//     d_v = a^T dN.
// Score tiles stay in registers and become the A operands of the products
// (CToA), as in the forward; on the 128-key band a query-kernel warp holds
// only the 80 keys its rows can see, from its first row on (session 37:
// 21% fewer instructions in LoLCATs' folded query kernel).
// kDc: LoLCATs' window (the gate, and dc at the argmax); Lizard's has
// neither, so its kernels track no argmax (session 36: 14% fewer
// instructions in its query kernel, 8% in its key kernel).
// The fold (kFold, LoLCATs' fused training step): each kernel also loads its
// chunk's rows of one Hedgehog map's logits' gradient dl and that map's W^T
// and starts its d_q / d_k sum at dl W^T / scale, so the map's part of the
// input gradient never makes a round trip through device memory; the key
// kernel adds the linear part's d_v into its own. The query kernel holds dl
// and W^T where the band's values go, and loads the values after that
// product, while it computes the scores (no more shared memory: still two
// CTAs an SM; streaming the values instead, to hold dl and W^T beside
// them, measured 32 us slower at 32k); the key kernel holds them after its
// other tiles (98,304 B). Both read dl and W^T, 24 KB more a CTA, and the
// key kernel d_v_add too (96 -> 136 KB): bound by L2, it took 783 -> 946 us
// at 32k on the H100, the query kernel 643 -> 699 us.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <utility>

#include "kernels/linear_attention/tile_mma.cuh"
#include "kernels/linear_attention/window_mask.cuh"
#include "kernels/lolcats/lolcats_window_bwd_params.h"

namespace linearize::kernels {
namespace {

using tiles::bf16;
constexpr int kC = 64;
constexpr int kThreads = 128;
constexpr int kMaxSinks = 8;

// The key kernel's queries per step (fewer live registers beside dk and dv,
// and the unit its q and dN rows stream in).
constexpr int kSub = 32;
constexpr int kFoldFh = kWindowFoldHalfFeatures;

template <int D, int kBand, bool kFold = false>
struct Cfg {
  static constexpr int SD = tiles::Stride(D);
  static constexpr int SL = tiles::Stride(kFoldFh);
  // Query kernel: q 64 + k kBand + v kBand + dN 64 rows; with streamed
  // values, k kBand + dN 64 + two 64-row value buffers (q in the second).
  static constexpr bool kStreamV = kBand > 2 * kC;
  static constexpr int kRows = kStreamV ? kBand + 3 * kC : 2 * kC + 2 * kBand;
  static constexpr int kBytes = kRows * SD * 2;
  // The fold's tiles, dl [64][Fh] and W^T [Fh][D]: in the query kernel in
  // the values' place (the 128-key band's), in the key kernel after its
  // other tiles.
  static constexpr int kFoldTiles = kFold ? kC * SL + kFoldFh * SD : 0;
  static_assert(!kFold || (!kStreamV && kFoldTiles <= kBand * SD),
                "the fold's tiles fit in the values' place");
  // Key kernel: k 64 + v 64 rows, two stages of q kSub + dN kSub rows, then
  // kBand per-query floats x 4.
  static constexpr int kSteps = kBand / kSub;
  static constexpr int kStage = 2 * kSub * SD;
  static constexpr int kKeyTiles = (2 * kC) * SD + 2 * kStage + kFoldTiles;
  static constexpr int kKeyBytes = kKeyTiles * 2 + 4 * kBand * 4;
  // The query kernel's score tiles a warp holds: the 80 band keys its rows
  // see (W <= 64), or, with streamed values, the whole band (the value
  // buffers' order and barriers need each tile's place known at compile
  // time).
  using Tiles = window::WarpBandTiles<kBand - kC, kBand, !kStreamV>;
};

struct Seq {
  const bf16 *q, *k, *v, *dn;
  int64_t bh, row0;  // row0: (b, h)'s first row in [B, H, T] arrays
  template <int D>
  __device__ static Seq Make(const LolcatsWindowBwdParams& p, int64_t b, int64_t h) {
    Seq s;
    const int64_t hk = h / (p.heads / p.kv_heads);
    s.bh = b * p.heads + h;
    s.row0 = s.bh * p.length;
    s.q = static_cast<const bf16*>(p.q) + s.row0 * D;
    s.dn = static_cast<const bf16*>(p.d_num) + s.row0 * D;
    s.k = static_cast<const bf16*>(p.k) + (b * p.kv_heads + hk) * p.length * D;
    s.v = static_cast<const bf16*>(p.v) + (b * p.kv_heads + hk) * p.length * D;
    return s;
  }
};

// acc[j] (+)= x(rows r0.., kK columns) * y(rows 8 (tile0 + j) .., same columns)^T
// for the tile pairs that overlap [lo, hi] (the others stay as they are).
template <int kK, int kTiles>
__device__ __forceinline__ void RowsTimesRowsT(float (&acc)[kTiles][4], const bf16* x, int sx,
                                               int r0, const bf16* y, int sy, int tile0,
                                               int lo = 0, int hi = kTiles) {
#pragma unroll
  for (int kk = 0; kk < kK; kk += 16) {
    uint32_t a[4];
    tiles::LoadA(a, x, sx, r0, kk);
#pragma unroll
    for (int j = 0; j < kTiles; j += 2) {
      if (j + 1 >= lo && j <= hi) {
        uint32_t b[4];
        tiles::LoadB2(b, y, sy, 8 * (tile0 + j), kk);
        tiles::Mma(acc[j], a, b[0], b[1]);
        tiles::Mma(acc[j + 1], a, b[2], b[3]);
      }
    }
  }
}

// The fold: one map's dl rows first .. first + 63 of the (b, h) whose first
// row is row0, and its W^T (head h), into sdl / sw (no commit).
template <int D, int SL, int SD>
__device__ __forceinline__ void LoadFoldMap(bf16* sdl, bf16* sw, const WindowFoldMap& map,
                                            int64_t row0, int64_t first, int64_t h,
                                            int64_t length) {
  tiles::LoadTile<bf16, kC, kFoldFh, kThreads>(
      sdl, SL, 0, static_cast<const bf16*>(map.dl) + row0 * kFoldFh, first, length);
  tiles::LoadTile<bf16, kFoldFh, D, kThreads>(
      sw, SD, 0, static_cast<const bf16*>(map.weight_t) + h * kFoldFh * D, 0, kFoldFh);
}

// The fold's start of a gradient sum that is scaled at the end: acc += dl W^T
// / scale for the warp's rows r0 .. r0 + 15.
template <int D, int SL, int SD>
__device__ __forceinline__ void StartAtLogitsGrad(float (&acc)[D / 8][4], const bf16* sdl,
                                                  const bf16* sw, int r0, float scale) {
  tiles::RowBlockTimesRows<kFoldFh>(acc, sdl, SL, r0, sw, SD, 0);
  const float inv = 1.f / scale;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] *= inv;
  }
}

// out[D/8] += the C-tile pair (w0, w1) (16 rows x 16 columns, as an A
// fragment) * rows row0 .. row0 + 15 of y.
template <int D>
__device__ __forceinline__ void PairTimesRows(float (&out)[D / 8][4], const float (&w0)[4],
                                              const float (&w1)[4], const bf16* y, int sy,
                                              int row0) {
  uint32_t a[4], unused[4];
  tiles::CToA<false>(w0, w1, a, unused);
#pragma unroll
  for (int j = 0; j < D / 8; j += 2) {
    uint32_t b[4];
    tiles::LoadB2T(b, y, sy, 8 * j, row0);
    tiles::Mma(out[j], a, b[0], b[1]);
    tiles::Mma(out[j + 1], a, b[2], b[3]);
  }
}

template <int D, int kBand, bool kFold, bool kDc>
__global__ void __launch_bounds__(kThreads) QueryKernel(const LolcatsWindowBwdParams p) {
  using Cf = Cfg<D, kBand, kFold>;
  constexpr int kBefore = kBand - kC;  // keys before the chunk in the band
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr bool kStreamV = Cf::kStreamV;
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  bf16* sdn = sk + kBand * Cf::SD;
  bf16* sv = sdn + kC * Cf::SD;  // the band's values, or (streamed) two 64-row buffers
  bf16* sq = kStreamV ? sv + kC * Cf::SD : sv + kBand * Cf::SD;
  bf16* sdl = sv;  // the fold's, until the values load
  bf16* sw = sdl + kC * Cf::SL;
  const int64_t n = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Seq s = Seq::Make<D>(p, b, h);
  const int64_t q0 = n * kC, k0 = q0 - kBefore;  // band row u holds key k0 + u
  // Streamed: band value rows 64 c .. 64 c + 63 go to buffer c & 1.
  const auto load_values = [&](int c) {
    tiles::LoadTile<bf16, kC, D, kThreads>(sv + (c & 1) * kC * Cf::SD, Cf::SD, 0, s.v,
                                           k0 + kC * c, p.length);
    tiles::CpAsyncCommit();
  };
  tiles::LoadTile<bf16, kC, D, kThreads>(sq, Cf::SD, 0, s.q, q0, p.length);
  tiles::LoadTile<bf16, kBand, D, kThreads>(sk, Cf::SD, 0, s.k, k0, p.length);
  tiles::LoadTile<bf16, kC, D, kThreads>(sdn, Cf::SD, 0, s.dn, q0, p.length);
  if constexpr (kStreamV) {
    load_values(0);  // one group with q, k and dN
  } else if constexpr (kFold) {
    LoadFoldMap<D, Cf::SL, Cf::SD>(sdl, sw, p.q_map, s.row0, q0, h, p.length);
    tiles::CpAsyncCommit();  // the values load once dl W^T is formed
  } else {
    tiles::LoadTile<bf16, kBand, D, kThreads>(sv, Cf::SD, 0, s.v, k0, p.length);
    tiles::CpAsyncCommit();
  }

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;
  const int w = static_cast<int>(p.window);
  const typename Cf::Tiles band(r0, w);  // the warp's score tiles, and those its rows see
  constexpr int kTiles = Cf::Tiles::kCount;
  // The per-row and per-head scalars, read while the tiles are in flight.
  const float gate = kDc ? p.gate[h] : 1.f;
  float sink_max = -INFINITY;  // Lizard: the sinks enter the forward's c_i
  for (int m = 0; m < p.sink_count && p.sinks != nullptr; ++m) {
    sink_max = fmaxf(sink_max, p.sinks[h * p.sink_count + m]);
  }
  float dz[2], dc[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t i = q0 + r0 + g + 8 * half;
    const int64_t row = s.row0 + (i < p.length ? i : 0);
    dz[half] = i < p.length ? p.d_den[row] : 0.f;
    dc[half] = i < p.length && kDc ? p.dc[row] : 0.f;
  }
  tiles::CpAsyncWaitAll();
  __syncthreads();

  // The fold's dl W^T / scale, copied into o below: o is declared after the
  // scores, as before the fold, so the unfolded kernels keep their registers.
  float fold_start[D / 8][4] = {};
  if constexpr (kFold) {
    StartAtLogitsGrad<D, Cf::SL, Cf::SD>(fold_start, sdl, sw, r0, p.scale);
    __syncthreads();  // every warp is done with dl and W^T
    tiles::LoadTile<bf16, kBand, D, kThreads>(sv, Cf::SD, 0, s.v, k0, p.length);
    tiles::CpAsyncCommit();
  }
  float sc[kTiles][4] = {};
  RowsTimesRowsT<D>(sc, sq, Cf::SD, r0, sk, Cf::SD, band.first, band.lo, band.hi);
  if constexpr (kStreamV) {
    __syncthreads();  // every warp is done with q
    load_values(1);
  }
  // Per row half: c_i and (kDc) its first key (band index), then the weights
  // a in place, only in the tile pairs the warp's rows can see (the others
  // stay unread).
  const float c2 = p.scale * window::kLog2e;
  int arg[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = r0 + g + 8 * half;  // in the chunk; band key u is at distance kBefore + r - u
    const int64_t i = q0 + r;
    const int64_t row = s.row0 + (i < p.length ? i : 0);
    const window::RowLimit sees(i, w);
    float mx = -INFINITY;  // of the unscaled scores
    int a = INT_MAX;       // keys in increasing order per thread
#pragma unroll
    for (int jp = 0; jp < kTiles / 2; ++jp) {
      if (!band.PairSeen(jp)) continue;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = 2 * jp + e / 2, u = 8 * (band.first + j) + 2 * t + (e & 1);
        float& x = sc[j][2 * half + (e & 1)];
        x = sees.Sees(kBefore + r - u) ? x : -INFINITY;
        if constexpr (kDc) {
          if (x > mx) {
            mx = x;
            a = u;
          }
        } else {
          mx = fmaxf(mx, x);
        }
      }
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      const float om = __shfl_xor_sync(0xffffffffu, mx, off);
      if constexpr (kDc) {
        const int oa = __shfl_xor_sync(0xffffffffu, a, off);
        if (om > mx || (om == mx && oa < a)) {
          mx = om;
          a = oa;
        }
      } else {
        mx = fmaxf(mx, om);
      }
    }
    const float c = fmaxf(mx * p.scale, sink_max);
    const float b = window::Exp2Offset(c, gate);
    arg[half] = a;
#pragma unroll
    for (int jp = 0; jp < kTiles / 2; ++jp) {
      if (!band.PairSeen(jp)) continue;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float& x = sc[2 * jp + e / 2][2 * half + (e & 1)];
        x = window::Exp2(fmaf(x, c2, -b));
      }
    }
    if (i < p.length && t == 0) {
      p.row_max[row] = c;
      if constexpr (kDc) p.argmax[row] = static_cast<int>(k0 + a);
    }
  }
  // d_q = scale ds K_band, one 16-key slice at a time: ds = a (dN . v + dZ)
  // (+ dc at the argmax) from the slice's dN v^T.
  float o[D / 8][4] = {};  // d_q / scale
  if constexpr (kFold) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[j][e] = fold_start[j][e];
    }
    tiles::CpAsyncWaitAll();
    __syncthreads();  // the values landed
  }
#pragma unroll
  for (int kk = 0; kk < kTiles / 2; ++kk) {
    // Slices per value buffer: 64 rows streamed, else the whole band in one.
    constexpr int kPerBuffer = (kStreamV ? kC : kBand) / 16;
    if (kStreamV && kk % kPerBuffer == 0 && kk > 0) {
      tiles::CpAsyncWaitAll();
      __syncthreads();  // values 64 c .. landed; every warp is done with the other buffer
      const int c = kk / kPerBuffer;
      if (c + 1 < kBand / kC) load_values(c + 1);
    }
    if (band.PairSeen(kk)) {
      // Relative, the slice's 16 keys start at band row 8 first + 16 kk of the one buffer.
      float dp[2][4] = {};
      RowsTimesRowsT<D>(dp, sdn, Cf::SD, r0, sv + ((kk / kPerBuffer) & 1) * kC * Cf::SD, Cf::SD,
                        band.first + 2 * (kk % kPerBuffer));
#pragma unroll
      for (int jt = 0; jt < 2; ++jt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int half = e >> 1, u = 8 * (band.first + 2 * kk + jt) + 2 * t + (e & 1);
          float ds = sc[2 * kk + jt][e] * (dp[jt][e] + dz[half]);
          if constexpr (kDc) ds += u == arg[half] ? dc[half] : 0.f;
          dp[jt][e] = ds;
        }
      }
      PairTimesRows<D>(o, dp[0], dp[1], sk, Cf::SD, 8 * band.first + 16 * kk);
    }
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t i = q0 + r0 + g + 8 * half;
    if (i >= p.length) continue;
    const int64_t at = (s.row0 + i) * D;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      tiles::StoreOut2(p.d_q, p.d_q_bf16, at + 8 * j + 2 * t, o[j][2 * half] * p.scale,
                       o[j][2 * half + 1] * p.scale);
    }
  }
}

template <int D, int kBand, bool kFold, bool kDc>
__global__ void __launch_bounds__(kThreads) KeyKernel(const LolcatsWindowBwdParams p) {
  using Cf = Cfg<D, kBand, kFold>;
  constexpr int kQueries = kBand;  // queries j0 .. j0 + kBand - 1 can see the chunk's keys
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kSteps = Cf::kSteps;
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  bf16* sv = sk + kC * Cf::SD;
  bf16* stages = sv + kC * Cf::SD;  // [2][q kSub rows | dN kSub rows]
  bf16* sdl = stages + 2 * Cf::kStage;  // the fold's
  bf16* sw = sdl + kC * Cf::SL;
  float* s_b = reinterpret_cast<float*>(smem_raw + Cf::kKeyTiles * 2);
  float* s_dz = s_b + kQueries;
  float* s_dc = s_dz + kQueries;
  int* s_arg = reinterpret_cast<int*>(s_dc + kQueries);
  const int64_t m = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Seq s = Seq::Make<D>(p, b, h);
  const int64_t j0 = m * kC;
  // Queries j0 + kSub qc .. into stage qc & 1, one cp.async group.
  const auto load_step = [&](int qc) {
    bf16* stage = stages + (qc & 1) * Cf::kStage;
    tiles::LoadTile<bf16, kSub, D, kThreads>(stage, Cf::SD, 0, s.q, j0 + kSub * qc, p.length);
    tiles::LoadTile<bf16, kSub, D, kThreads>(stage + kSub * Cf::SD, Cf::SD, 0, s.dn,
                                             j0 + kSub * qc, p.length);
    tiles::CpAsyncCommit();
  };
  tiles::LoadTile<bf16, kC, D, kThreads>(sk, Cf::SD, 0, s.k, j0, p.length);
  tiles::LoadTile<bf16, kC, D, kThreads>(sv, Cf::SD, 0, s.v, j0, p.length);
  if constexpr (kFold) LoadFoldMap<D, Cf::SL, Cf::SD>(sdl, sw, p.k_map, s.row0, j0, h, p.length);
  load_step(0);  // one group with k and v (and the fold's tiles)
  load_step(1);
  // Per query u: the exp2-domain offset b of its row (window_mask.cuh; +inf
  // past the end, where the weights are then 0), d_den, dc and the argmax
  // as a distance from the chunk's first key (-1: none).
  const float gate = kDc ? p.gate[h] : 1.f;
  for (int u = threadIdx.x; u < kQueries; u += kThreads) {
    const int64_t i = j0 + u;
    const bool in = i < p.length;
    const int64_t row = s.row0 + (in ? i : 0);
    // All four loads first (row 0 stands in past the end): used as they
    // came, each waited on its own (ncu: 14% of the kernel's samples).
    const float c = p.row_max[row], dz = p.d_den[row];
    const float dc = kDc ? p.dc[row] : 0.f;
    const int arg = kDc ? p.argmax[row] : 0;
    s_b[u] = in ? window::Exp2Offset(c, gate) : INFINITY;
    s_dz[u] = in ? dz : 0.f;
    s_dc[u] = in ? dc : 0.f;
    s_arg[u] = in && kDc ? static_cast<int>(arg - j0) : -1;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * warp;
  const int w = static_cast<int>(p.window);
  const float c2 = p.scale * window::kLog2e;
  // Key row r (j = j0 + r) sees query u at distance u - r in [0, w); none past the end.
  int key_limit[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    key_limit[half] = j0 + r0 + g + 8 * half < p.length ? w : 0;
  }
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
#pragma unroll
  for (int qc = 0; qc < kSteps; ++qc) {
    if (qc + 1 < kSteps) {
      tiles::CpAsyncWaitGroup<1>();
    } else {
      tiles::CpAsyncWaitAll();
    }
    __syncthreads();  // step qc's rows (and the scalars) are in
    if constexpr (kFold) {
      if (qc == 0) StartAtLogitsGrad<D, Cf::SL, Cf::SD>(dk, sdl, sw, r0, p.scale);
    }
    // Queries u see the warp's keys r0 .. r0 + 15 only for r0 <= u < r0 + 15 + w.
    if (kSub * qc + kSub - 1 >= r0 && kSub * qc < r0 + 15 + w) {
      // Rows: the warp's 16 keys; columns: kSub queries u = kSub qc + column.
      const bf16* sq_sub = stages + (qc & 1) * Cf::kStage;
      const bf16* sdn_sub = sq_sub + kSub * Cf::SD;
      float sc[kSub / 8][4] = {}, dp[kSub / 8][4] = {};
      RowsTimesRowsT<D>(sc, sk, Cf::SD, r0, sq_sub, Cf::SD, 0);
      RowsTimesRowsT<D>(dp, sv, Cf::SD, r0, sdn_sub, Cf::SD, 0);
#pragma unroll
      for (int jt = 0; jt < kSub / 8; ++jt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = r0 + g + 8 * (e >> 1);
          const int u = qc * kSub + 8 * jt + 2 * t + (e & 1);
          const bool valid =
              static_cast<unsigned>(u - r) < static_cast<unsigned>(key_limit[e >> 1]);
          const float a = valid ? window::Exp2(fmaf(sc[jt][e], c2, -s_b[u])) : 0.f;
          const float tv = a * (dp[jt][e] + s_dz[u]);
          sc[jt][e] = a;  // -> d_v
          // ds -> d_k; the argmax is a key the query sees
          dp[jt][e] = kDc && s_arg[u] == r ? tv + s_dc[u] : tv;
        }
      }
#pragma unroll
      for (int kk = 0; kk < kSub / 16; ++kk) {
        PairTimesRows<D>(dv, sc[2 * kk], sc[2 * kk + 1], sdn_sub, Cf::SD, 16 * kk);
        PairTimesRows<D>(dk, dp[2 * kk], dp[2 * kk + 1], sq_sub, Cf::SD, 16 * kk);
      }
    }
    if (qc + 2 < kSteps) {
      __syncthreads();  // every warp is done with the stage
      load_step(qc + 2);
    }
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t j = j0 + r0 + g + 8 * half;
    if (j >= p.length) continue;
    const int64_t at = (s.row0 + j) * D;
    if constexpr (kFold) {  // the linear part's d_v, loaded before d_k's stores
      uint32_t add[D / 8];
#pragma unroll
      for (int c = 0; c < D / 8; ++c) {
        add[c] = *reinterpret_cast<const uint32_t*>(static_cast<const bf16*>(p.d_v_add) + at +
                                                    8 * c + 2 * t);
      }
#pragma unroll
      for (int c = 0; c < D / 8; ++c) {
        const float2 a = tiles::Unpack(add[c]);
        dv[c][2 * half] += a.x;
        dv[c][2 * half + 1] += a.y;
      }
    }
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      const int64_t col = at + 8 * c + 2 * t;
      tiles::StoreOut2(p.d_k, p.d_kv_bf16, col, dk[c][2 * half] * p.scale,
                       dk[c][2 * half + 1] * p.scale);
      tiles::StoreOut2(p.d_v, p.d_kv_bf16, col, dv[c][2 * half], dv[c][2 * half + 1]);
    }
  }
}

// kDc: LoLCATs' window (dc, argmax and the gate given), else Lizard's.
template <int D, int kBand, bool kFold, bool kDc>
const char* LaunchBand(const LolcatsWindowBwdParams& p) {
  using Cf = Cfg<D, kBand, kFold>;
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  const dim3 grid(static_cast<unsigned>((p.length + kC - 1) / kC), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  const std::pair<const void*, int> kernels[] = {
      {reinterpret_cast<const void*>(QueryKernel<D, kBand, kFold, kDc>), Cf::kBytes},
      {reinterpret_cast<const void*>(KeyKernel<D, kBand, kFold, kDc>), Cf::kKeyBytes}};
  for (const auto& [kernel, bytes] : kernels) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) return cudaGetErrorString(err);
  }
  QueryKernel<D, kBand, kFold, kDc><<<grid, kThreads, Cf::kBytes, stream>>>(p);
  KeyKernel<D, kBand, kFold, kDc><<<grid, kThreads, Cf::kKeyBytes, stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <int D, bool kDc>
const char* Launch(const LolcatsWindowBwdParams& p) {
  return p.window <= kC ? LaunchBand<D, 2 * kC, false, kDc>(p)
                        : LaunchBand<D, 3 * kC, false, kDc>(p);
}

}  // namespace

bool LolcatsWindowBwdSupported(const LolcatsWindowBwdParams& p) {
  return (p.head_dim == 64 || p.head_dim == 128) && p.window >= 1 && p.window <= 2 * kC &&
         p.sink_count >= 0 && p.sink_count <= kMaxSinks && p.batch >= 1 && p.batch <= 65535 &&
         p.heads >= 1 && p.heads <= 65535 && p.kv_heads >= 1 && p.heads % p.kv_heads == 0 &&
         p.length >= 1 && p.length < (1 << 30);
}

const char* LolcatsWindowBwdFoldUnsupported(const LolcatsWindowBwdParams& p) {
  if (!LolcatsWindowBwdSupported(p)) return "LolcatsWindowBwd fold: unsupported sizes";
  if (p.heads != p.kv_heads) {
    return "LolcatsWindowBwd fold: grouped-query heads (d_k, d_v are summed over query heads "
           "after the kernel)";
  }
  if (p.head_dim != 128) return "LolcatsWindowBwd fold: head_dim is not 128";
  if (p.window > kC) return "LolcatsWindowBwd fold: window is over 64";
  if (p.sinks != nullptr) return "LolcatsWindowBwd fold: sinks (Lizard's window)";
  return nullptr;
}

const char* LaunchLolcatsWindowBwd(const LolcatsWindowBwdParams& p) {
  if (!LolcatsWindowBwdSupported(p)) return "LolcatsWindowBwd: unsupported sizes";
  if (!(p.q && p.k && p.v && p.d_num && p.d_den && p.d_q && p.d_k && p.d_v && p.row_max)) {
    return "LolcatsWindowBwd: missing tensors";
  }
  if ((p.dc != nullptr) != (p.argmax != nullptr) || (p.dc != nullptr) != (p.gate != nullptr)) {
    return "LolcatsWindowBwd: dc, argmax and gate must all be set (LoLCATs) or all null (Lizard)";
  }
  if ((p.sinks != nullptr) != (p.sink_count > 0)) return "LolcatsWindowBwd: sinks and sink_count";
  const bool fold = p.q_map.dl || p.q_map.weight_t || p.k_map.dl || p.k_map.weight_t || p.d_v_add;
  if (fold) {
    if (const char* why = LolcatsWindowBwdFoldUnsupported(p)) return why;
    if (!(p.q_map.dl && p.q_map.weight_t && p.k_map.dl && p.k_map.weight_t && p.d_v_add)) {
      return "LolcatsWindowBwd fold: needs both maps' dl and W^T, and d_v_add";
    }
    if (p.dc == nullptr) return "LolcatsWindowBwd fold: needs dc, argmax and gate (LoLCATs')";
    return LaunchBand<128, 2 * kC, true, true>(p);
  }
  if (p.dc != nullptr) return p.head_dim == 64 ? Launch<64, true>(p) : Launch<128, true>(p);
  return p.head_dim == 64 ? Launch<64, false>(p) : Launch<128, false>(p);
}

}  // namespace linearize::kernels
