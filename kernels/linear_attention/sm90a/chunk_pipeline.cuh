// The wgmma chunked kernels' common parts (.cu only, sm_90a): the shared
// memory layout of the two-warpgroup kernels, the chunk loads, the score
// helpers of the outputs warpgroup, the state warpgroup's loop, and the
// backward kernels' host side. The forward (chunked_linear_wgmma_cuda.cu),
// the backward's d_q (chunked_linear_dq_wgmma_cuda.cu, the same state loop)
// and its d_k / d_v (chunked_linear_dkv_wgmma_cuda.cu, the chunks in
// reverse) share them. chunked_linear_wgmma_cuda.cu's opening comment
// describes the design. Everything here has internal linkage: each kernel
// file compiles its own copy.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/feature_map/hedgehog_rows.cuh"
#include "kernels/linear_attention/chunk_gates.cuh"
#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/chunked_linear_params.h"
#include "kernels/linear_attention/tile_mma.cuh"
#include "kernels/linear_attention/wgmma.cuh"

namespace linearize::kernels {
namespace {

using tiles::bf16;
namespace wg = wgmma;

constexpr int kC = 64, kF = 128, kD = 128;
constexpr int kThreads = 256;  // two warpgroups
// Shared memory (bytes from a 1024-aligned base): [Q | K | V] tiles of two
// buffers, each [64][128] bf16 in two 64-column slabs; S of two buffers,
// [128][128] bf16 in two slabs; with fused maps the phi_k tile and the two
// transposed map weights [Fh = 64][D] (tiles too); z float [2][128].
constexpr int kSlab = kC * 128;
constexpr int kTile = 2 * kSlab;
constexpr int kStateSlab = kF * 128;
constexpr int kState = 2 * kStateSlab;
constexpr int kQ = 0, kK = 2 * kTile, kV = 4 * kTile, kS = 6 * kTile;
constexpr int kPhiK = kS + 2 * kState, kW = kPhiK + kTile, kZ = kW + 2 * kTile;
// Gated: the chunk's log gates [2][64] (with the tiles), then the state
// warpgroup's key decays [64] and chunk decay.
constexpr int kGates = kZ + 2 * kF * 4, kDecays = kGates + 2 * kC * 4;
constexpr int kBytes = kDecays + (kC + 4) * 4 + 1024;  // + the alignment slack
static_assert(kBytes <= 227 * 1024, "shared memory");
// The backward kernels (d_q, d_k / d_v) add each chunk's d_den and z rows
// [2][2][64] at kRowScalars, and take the (unfused) map weights' tiles at kW
// for a second query-side tile (Ptrs::q2).
constexpr int kRowScalars = kDecays + (kC + 4) * 4, kBwdBytes = kBytes + 2 * 2 * kC * 4;
static_assert(kBwdBytes <= 227 * 1024, "shared memory");

// The dynamic shared memory's 1024-aligned base (the 128-byte swizzle's
// atoms; kBytes keeps the slack). kShared: pointer arithmetic on smem
// itself, so the compiler still knows the result is shared memory and every
// access through it is an LDS / STS with a 32-bit address; else an integer
// round trip, and generic LD / ST. Each kernel takes the faster (session 32,
// H100, T 32k): generic only where LDS / STS measured slower, Lizard's fused
// prefill (1090 against 959 us; in one call of session 34, 932 against 913)
// and the ungated d_k / d_v (LoLCATs': 754 against 695 us).
template <bool kShared = true>
__device__ __forceinline__ unsigned char* Aligned1024(unsigned char* smem) {
  if constexpr (kShared) {
    return smem + ((1024 - (reinterpret_cast<uintptr_t>(smem) & 1023)) & 1023);
  } else {
    return reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem) + 1023) &
                                            ~uintptr_t(1023));
  }
}

// Byte offset of (row, col) in a tile of 64-column slabs, `slab` bytes each.
__device__ __forceinline__ int TileOffset(int row, int col, int slab) {
  return (col >> 6) * slab + wg::SwizzledOffset(row, col & 63);
}

// The bf16 pair at (row, col), col even, of a [64][128] tile (slabs of kSlab
// bytes), as floats.
__device__ __forceinline__ float2 TilePair(const unsigned char* tile, int row, int col) {
  return tiles::Unpack(*reinterpret_cast<const uint32_t*>(tile + TileOffset(row, col, kSlab)));
}

// Rows [start, start + 64) of a [T][128] bf16 matrix into a tile (zeros
// before 0 and at or past `limit`), asynchronously, by `threads` threads
// (a multiple of 128) from `first` on (the caller is one of them). A thread
// copies the same 16-byte column of every (threads / 16)-th row, which
// keeps its swizzle (rows step by a multiple of 8): one add a copy, where
// the offset from the copy's index took about 30 instructions (ncu, 32k:
// Lizard's d_q 1092 -> 939 us). The default form finds the rows' valid
// range once and steps a 32-bit shared address and the source (Lizard's
// fused gated forward 1118 -> 1011 us, its pass 1 274 -> 259);
// kPerRowCheck, for the d_k / d_v kernel at its 168-register cap, keeps
// fewer values live and checks each row (LoLCATs' d_k / d_v: 773 us, 807
// with the default form, which spills more there).
template <bool kPerRowCheck = false>
__device__ void IssueTile(unsigned char* tile, const bf16* src, int64_t start, int64_t limit,
                          int first = 0, int threads = kThreads) {
  const int lane = int(threadIdx.x) - first, step = threads / 16, col = (lane & 15) * 8;
  if constexpr (kPerRowCheck) {
    unsigned char* dst = tile + TileOffset(lane / 16, col, kSlab);
#pragma unroll 1
    for (int row = lane / 16; row < kC; row += step, dst += step * 128) {
      const int64_t r = start + row;
      const bool valid = r >= 0 && r < limit;
      tiles::CpAsync16(dst, src + (valid ? r : 0) * 128 + col, valid);
    }
  } else {
    const tiles::ValidRows<kC> rows(start, limit);
    uint32_t dst = tiles::SmemAddr(tile) + TileOffset(lane / 16, col, kSlab);
    const bf16* from = src + (start + lane / 16) * 128 + col;
#pragma unroll 1
    for (int row = lane / 16; row < kC; row += step, dst += step * 128, from += step * 128) {
      const bool valid = rows.Has(row);
      tiles::CpAsync16At(dst, valid ? from : src, valid);
    }
  }
}

// Named barriers (0 is __syncthreads'): all kAll threads of the CTA, which
// the warpgroups reach from their own loops; the state warpgroup alone; the
// outputs warpgroup alone.
template <int kAll = kThreads>
__device__ __forceinline__ void BarrierAll() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(kAll) : "memory");
}
__device__ __forceinline__ void BarrierState() { asm volatile("bar.sync 2, 128;\n" ::: "memory"); }
__device__ __forceinline__ void BarrierOutputs() {
  asm volatile("bar.sync 3, 128;\n" ::: "memory");
}

struct Ptrs {
  const bf16 *q, *k, *v;
  bf16* y;    // or null
  void* num;  // or null: float32, or bf16 with num_bf16
  bool num_bf16;
  float* den;  // or null
  // Training outputs of the fused forward, or null: y's denominator [T]
  // with the window, and the maps' features [T][128] (phi_k of the key
  // head, written by its group's first query head).
  float* y_den;
  bf16 *phi_q_out, *phi_k_out;
  int64_t length;
  int64_t key_delay;  // position t reads the key and value of t - key_delay
  int64_t c_begin;    // the block's first chunk
  int n_chunks;       // the block's chunks
  float gate, scale;  // the fused window's g_h and 1 / sqrt(D)
  const float* g;     // gated: this (b, h)'s log gates [T], else null
  // The d_q kernel's per-query rows, or null: d_den [T], the normalised
  // form's z [T], and q2 [T][128], a second query-side tile (d_q's phi_q,
  // d_k / d_v's d_num).
  const float *row_den, *row_z;
  const bf16* q2;
  bool reverse;  // chunks from the block's last to its first (d_k / d_v)
};

// The first position of the block's i-th chunk in the order the loops take
// them.
__device__ __forceinline__ int64_t ChunkStart(const Ptrs& s, int i) {
  return (s.c_begin + (s.reverse ? s.n_chunks - 1 - i : i)) * kC;
}

// Chunk i of the block (local index)'s log gates (gated) into g_tile[64],
// asynchronously, by threads first .. first + 63 (not committed): 0 past
// the end (a gate of 1).
__device__ __forceinline__ void IssueGates(float* g_tile, const Ptrs& s, int i, int first) {
  const int lane = int(threadIdx.x) - first;
  if (s.g != nullptr && lane >= 0 && lane < kC) {
    const int64_t t = ChunkStart(s, i) + lane;
    tiles::CpAsync4(g_tile + lane, s.g + (t < s.length ? t : 0), t < s.length);
  }
}

// Chunk i of the block (local index)'s keys and values into the tiles k and
// v, and its log gates (gated) into g_tile[64], asynchronously, by `threads`
// threads from `first` on (not committed). Key row r at position start + r
// holds source start + r - delay, zero unless that source is >= 0 and the
// position is < length; with the fused window (raw_keys_to_end) the keys
// run to the sequence's end (the window's), and the map zeroes the later
// positions' features.
template <bool kPerRowCheck = false>
__device__ void IssueKeys(unsigned char* k, unsigned char* v, float* g_tile, const Ptrs& s, int i,
                          bool raw_keys_to_end, int first, int threads) {
  const int64_t start = ChunkStart(s, i);
  const int64_t src = start - s.key_delay;
  const int64_t limit = raw_keys_to_end ? s.length : s.length - s.key_delay;
  IssueTile<kPerRowCheck>(k, s.k, src, limit, first, threads);
  IssueTile<kPerRowCheck>(v, s.v, src, limit, first, threads);
  IssueGates(g_tile, s, i, first);
}

// Chunk i of the block's per-query scalars (the backward's d_den, and the
// normalised form's z after them) into rows[2 * 64], asynchronously, by
// threads first .. first + 63 (not committed): 0 past the end.
__device__ __forceinline__ void IssueRowScalars(float* rows, const Ptrs& s, int i, int first) {
  const int lane = int(threadIdx.x) - first;
  if (s.row_den != nullptr && lane >= 0 && lane < kC) {
    const int64_t t = ChunkStart(s, i) + lane;
    tiles::CpAsync4(rows + lane, s.row_den + (t < s.length ? t : 0), t < s.length);
    if (s.row_z != nullptr) {
      tiles::CpAsync4(rows + kC + lane, s.row_z + (t < s.length ? t : 0), t < s.length);
    }
  }
}

// The parts of chunk i of the block into tile buffer i % 2, asynchronously,
// by `threads` threads from `first` on: the queries and/or the keys and
// values (IssueKeys).
template <bool kPerRowCheck = false>
__device__ void IssueChunk(unsigned char* sm, const Ptrs& s, int i, bool queries, bool keys,
                           bool raw_keys_to_end, int first = 0, int threads = kThreads) {
  const int buf = i & 1;
  if (queries) {
    const int64_t start = ChunkStart(s, i);
    IssueTile<kPerRowCheck>(sm + kQ + buf * kTile, s.q, start, s.length, first, threads);
    if (s.q2 != nullptr) {
      IssueTile<kPerRowCheck>(sm + kW + buf * kTile, s.q2, start, s.length, first, threads);
    }
    IssueRowScalars(reinterpret_cast<float*>(sm + kRowScalars) + buf * 2 * kC, s, i, first);
  }
  if (keys) {
    IssueKeys<kPerRowCheck>(sm + kK + buf * kTile, sm + kV + buf * kTile,
                            reinterpret_cast<float*>(sm + kGates) + buf * kC, s, i, raw_keys_to_end,
                            first, threads);
  }
  tiles::CpAsyncCommit();
}

// Waits for chunk i's tiles (this thread's copies, then everyone's), and
// issues chunk i + 1's. With the fused window the outputs warpgroup issues
// the keys, then the values, as two commit groups (the window waits for
// each within the chunk, on its own: the keys for its scores, the values
// later), also past the block's last chunk (the window's current keys are
// the next chunk's delayed ones), and the state warpgroup the queries.
template <bool kWindow, int kAll = kThreads, bool kPerRowCheck = false>
__device__ void NextChunk(unsigned char* sm, const Ptrs& s, int i) {
  tiles::CpAsyncWaitAll();
  wg::FenceProxyAsync();  // the copies and the state writes, before the tensor cores read them
  BarrierAll<kAll>();
  if constexpr (kWindow) {
    if (threadIdx.x < 128) {  // the keys and the values in groups of their own
      // (IssueKeys with a commit between reorders this kernel's SASS and did
      // not show the same gain: session 30, call 7.)
      const int buf = (i + 1) & 1;
      const int64_t src = ChunkStart(s, i + 1) - s.key_delay;
      IssueTile(sm + kK + buf * kTile, s.k, src, s.length, 0, 128);
      tiles::CpAsyncCommit();
      IssueTile(sm + kV + buf * kTile, s.v, src, s.length, 0, 128);
      tiles::CpAsyncCommit();
    } else if (i + 1 < s.n_chunks) {
      IssueChunk(sm, s, i + 1, true, false, true, 128, 128);
    }
  } else if (i + 1 < s.n_chunks) {
    IssueChunk<kPerRowCheck>(sm, s, i + 1, true, true, false, 0, kAll);
  }
}

// a = X Y^T (m64n64 accumulators, not committed): X and Y K-major [64][128]
// tiles.
__device__ __forceinline__ void IssueScores(float (&a)[32], const unsigned char* x,
                                            const unsigned char* y) {
  wg::ZeroForProducts(a);
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    const int at = (kk / 4) * kSlab + (kk % 4) * 32;
    wg::MmaAsyncM64N64<0, 0>(a, wg::Descriptor(x + at, 16, 1024), wg::Descriptor(y + at, 16, 1024),
                             1);
  }
}

// acc's rows times dec[h] (m64n128 accumulators: h = 0 row g, 1 row g + 8).
__device__ __forceinline__ void ScaleAccRows(float (&acc)[64], const float (&dec)[2]) {
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    acc[4 * j] *= dec[0];
    acc[4 * j + 1] *= dec[0];
    acc[4 * j + 2] *= dec[1];
    acc[4 * j + 3] *= dec[1];
  }
}

// Fused maps: a warpgroup's logits l = x W for the chunk's 64 rows (x a
// K-major [64][128] tile, W^T [64][128] the K-major B), m64n64
// accumulators (rows 16 w + g + 8 h, columns 8 j + 2 t + e).
__device__ void MapLogits(float (&l)[32], const unsigned char* x, const unsigned char* w_t) {
  IssueScores(l, x, w_t);
  wg::Commit();
  wg::Wait<0>();
  wg::FenceOperands(l);
}

// The gate weights of a gated chunk's scores (m64n64 accumulator layout:
// rows 16 w + g + 8 h, columns 8 j + 2 t + e; b the in-chunk prefixes of
// the log gates lg[64], this warp's own scan, chunk_gates.cuh): f(i, w) for
// each accumulator i inside the causal mask. Rows queries i, columns keys
// j: w = exp(b_i - b_j) for j <= i, and row_dec[h] = exp(b_i) of the
// thread's rows. kKeyRows (the backward's transposed scores): rows keys j,
// columns queries i, w = exp(b_i - b_j) for i >= j, and row_dec[h] =
// exp(b_last - b_j).
template <bool kKeyRows, typename F>
__device__ __forceinline__ void ForEachScoreDecay(const float* lg, float (&row_dec)[2], F&& f) {
  const int warp = (threadIdx.x & 127) >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const gates::Prefix pre = gates::ScanGates(lg);
  const bool rows_hi = warp >= 2;  // the warp's rows in the chunk's second half
  const double last_f = __shfl_sync(0xffffffffu, pre.f1, 31);
  const int last_c = __shfl_sync(0xffffffffu, pre.c1, 31);
  float er[2];
  int cr[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = 16 * warp + g + 8 * h;
    const double fr = __shfl_sync(0xffffffffu, rows_hi ? pre.f1 : pre.f0, i & 31);
    er[h] = __shfl_sync(0xffffffffu, rows_hi ? pre.e1 : pre.e0, i & 31);
    cr[h] = __shfl_sync(0xffffffffu, rows_hi ? pre.c1 : pre.c0, i & 31);
    if constexpr (kKeyRows) {
      row_dec[h] = gates::Decay(last_f, last_c, fr, cr[h]);
    } else {
      row_dec[h] = gates::QueryDecay(fr, cr[h]);
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = 8 * j + 2 * t + e;
      const float ec = __shfl_sync(0xffffffffu, j >= 4 ? pre.e1 : pre.e0, col & 31);
      const int cc = __shfl_sync(0xffffffffu, j >= 4 ? pre.c1 : pre.c0, col & 31);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = 16 * warp + g + 8 * h;
        if constexpr (kKeyRows) {
          if (col >= row) f(4 * j + 2 * h + e, gates::Decay2(ec, cc, er[h], cr[h]));
        } else {
          if (col <= row) f(4 * j + 2 * h + e, gates::Decay2(er[h], cr[h], ec, cc));
        }
      }
    }
  }
}

// The scores a times their gate weights, in place, once their products are
// done.
template <bool kKeyRows = false>
__device__ __forceinline__ void DecayScores(const float* lg, float (&a)[32], float (&row_dec)[2]) {
  ForEachScoreDecay<kKeyRows>(lg, row_dec, [&](int i, float w) { a[i] *= w; });
}

// The weights alone (1 outside the causal mask, which MaskAndPack zeroes),
// from the gates before the scores exist, so that the scan and shuffles
// run while the scores' products do; ApplyDecays then weights the scores.
// (Where this measured slower: the d_k / d_v kernel, whose 168 registers
// then spill more, 1346 -> 1371 us at 32k, and the forward with the maps
// inside, 255 registers, 927 -> 980 us; session 34. The d_k / d_v kernel
// without its spills: 1148 against 1125 us, H200, session 35.)
template <bool kKeyRows = false>
__device__ __forceinline__ void ScoreDecays(const float* lg, float (&w)[32], float (&row_dec)[2]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) w[i] = 1.f;
  ForEachScoreDecay<kKeyRows>(lg, row_dec, [&](int i, float x) { w[i] = x; });
}

__device__ __forceinline__ void ApplyDecays(float (&a)[32], const float (&w)[32]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) a[i] *= w[i];
}

// The causal mask on the scores a (as DecayScores: kKeyRows keeps columns
// >= the row, else <= it), then a as bf16 A fragments of a register-A
// product (wgmma.cuh: af[kk] covers k step kk).
template <bool kKeyRows = false>
__device__ __forceinline__ void MaskAndPack(float (&a)[32], uint32_t (&af)[4][4]) {
  const int warp = (threadIdx.x & 127) >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + g + 8 * (e / 2), col = 8 * j + 2 * t + (e & 1);
      if (kKeyRows ? col < row : col > row) a[4 * j + e] = 0.f;
    }
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int r = 0; r < 4; ++r) af[kk][r] = tiles::Pack(a[8 * kk + 2 * r], a[8 * kk + 2 * r + 1]);
  }
}

// The state warpgroup's registers: (feature 64 half + 16 warp + g + 8 h,
// column 8 j + 2 t + e) is st[half][4 j + 2 h + e].
struct StatePlace {
  int warp, g, t;
  __device__ StatePlace() {
    const int tid = threadIdx.x & 127;
    warp = tid >> 5;
    g = (tid & 31) >> 2;
    t = tid & 3;
  }
  __device__ int Feature(int half, int h) const { return 64 * half + 16 * warp + g + 8 * h; }
  __device__ int Column(int j) const { return 8 * j + 2 * t; }
};

// A sum of block states, by all threads, into float32 [F][D] scratch over
// both state buffers (64 KB, unused yet) and z buffer 0: `initial` (or
// zero), then the blocks first, first + step, ... (count of them), the
// running sum decaying by each block's total decay decays[block]. A block's
// state is rows [F][row_cols] from states + block * F * row_cols, kv in the
// columns < D and the column sums (k_sum) in column D.
__device__ void FoldStatesToScratch(unsigned char* sm, const float* initial, const float* states,
                                    const float* decays, int row_cols, int first, int count,
                                    int step, int threads = kThreads) {
  float* scratch = reinterpret_cast<float*>(sm + kS);
  float* z = reinterpret_cast<float*>(sm + kZ);
  for (int i = threadIdx.x; i < kF * kD / 4; i += threads) {
    const int row = i / (kD / 4) * row_cols + (i % (kD / 4)) * 4;
    float4 sum = initial != nullptr ? *reinterpret_cast<const float4*>(initial + row)
                                    : make_float4(0.f, 0.f, 0.f, 0.f);
    for (int n = 0, a = first; n < count; ++n, a += step) {
      const float4 x = *reinterpret_cast<const float4*>(states + a * kF * row_cols + row);
      const float keep = decays[a];
      sum.x = fmaf(keep, sum.x, x.x), sum.y = fmaf(keep, sum.y, x.y);
      sum.z = fmaf(keep, sum.z, x.z), sum.w = fmaf(keep, sum.w, x.w);
    }
    reinterpret_cast<float4*>(scratch)[i] = sum;
  }
  for (int f = threadIdx.x; f < kF; f += threads) {
    float sum = initial != nullptr ? initial[f * row_cols + kD] : 0.f;
    for (int n = 0, a = first; n < count; ++n, a += step) {
      sum = fmaf(decays[a], sum, states[a * kF * row_cols + f * row_cols + kD]);
    }
    z[f] = sum;
  }
}

// The forward block's entry state (FoldStatesToScratch): the initial state
// plus the earlier blocks' local states (pass 1's, rows [F][D + 8], then
// each block's total decay after all the states). False (and z zeroed)
// when the block starts from zero.
constexpr int kRowCols = kD + 8;  // ChunkedLinearInitialStateCols
__device__ bool EntryStateToScratch(unsigned char* sm, const ChunkedLinearParams& p, int64_t bh,
                                    int blk) {
  const bool any = p.initial_state != nullptr || blk > 0;
  const float* initial =
      p.initial_state != nullptr ? p.initial_state + bh * kF * kRowCols : nullptr;
  const float* blocks = static_cast<const float*>(p.workspace) + bh * p.blocks * kF * kRowCols;
  const float* decays = static_cast<const float*>(p.workspace) +
                        p.batch * p.heads * p.blocks * kF * kRowCols + bh * p.blocks;
  if (any) {
    FoldStatesToScratch(sm, initial, blocks, decays, kRowCols, 0, blk, 1);
  } else {
    for (int f = threadIdx.x; f < kF; f += kThreads) reinterpret_cast<float*>(sm + kZ)[f] = 0.f;
  }
  return any;
}

// Calls store(feature, column, x0, x1) for each pair of the state
// warpgroup's registers (StatePlace), columns column and column + 1.
template <class Store>
__device__ __forceinline__ void ForStatePairs(const float (&st)[2][64], const Store& store) {
  const StatePlace m;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int j = 0; j < kD / 8; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        store(m.Feature(half, h), m.Column(j), st[half][4 * j + 2 * h],
              st[half][4 * j + 2 * h + 1]);
      }
    }
  }
}

// The registers as the bf16 state tile (the MN-major B of Q S).
__device__ void StoreStateBf16(const float (&st)[2][64], unsigned char* dst) {
  ForStatePairs(st, [&](int f, int col, float x0, float x1) {
    *reinterpret_cast<uint32_t*>(dst + TileOffset(f, col, kStateSlab)) = tiles::Pack(x0, x1);
  });
}

// phi = [softmax(l), softmax(-l)] of a warpgroup's 64 rows (MapLogits' l)
// into the K-major tile dst, the thread's row h zero unless live[h], and
// times w[h] if kScaled. One exponential per element and half
// (RowHalfPhiInPlace), a row half at a time: 32 more registers, not 64.
template <bool kScaled>
__device__ void StorePhi(const float (&l)[32], const bool (&live)[2], const float (&w)[2],
                         unsigned char* dst) {
  const StatePlace m;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float p[32], n[32];  // softmax(l) and softmax(-l): only row half h's entries are used
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      p[4 * j + 2 * h] = l[4 * j + 2 * h];
      p[4 * j + 2 * h + 1] = l[4 * j + 2 * h + 1];
    }
    hedgehog::RowHalfPhiInPlace<8>([&](int j, int i) -> float& { return p[4 * j + i]; },
                                   [&](int j, int i) -> float& { return n[4 * j + i]; }, h);
    const int row = 16 * m.warp + m.g + 8 * h;
    const float s = kScaled ? w[h] : 1.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int at = 4 * j + 2 * h, col = m.Column(j);
      *reinterpret_cast<uint32_t*>(dst + TileOffset(row, col, kSlab)) =
          live[h] ? tiles::Pack(p[at] * s, p[at + 1] * s) : 0u;
      *reinterpret_cast<uint32_t*>(dst + TileOffset(row, 64 + col, kSlab)) =
          live[h] ? tiles::Pack(n[at] * s, n[at + 1] * s) : 0u;
    }
  }
}

// phi_k (StorePhi) of a chunk whose first row is at `start`: a row is live
// if its key, delayed by s.key_delay, is inside the sequence (as IssueKeys).
__device__ void StoreKeyPhi(const float (&l)[32], const Ptrs& s, int64_t start,
                            unsigned char* dst) {
  const StatePlace m;
  bool live[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t src = start + 16 * m.warp + m.g + 8 * h - s.key_delay;
    live[h] = src >= 0 && src < s.length - s.key_delay;
  }
  StorePhi<false>(l, live, {1.f, 1.f}, dst);
}

// The phi_k tile of a chunk whose first row is at `start` (StoreKeyPhi's)
// into s.phi_k_out's live rows, 16-byte pieces, by the state warpgroup.
__device__ void CopyKeyPhiOut(const unsigned char* tile, const Ptrs& s, int64_t start) {
  for (int i = threadIdx.x & 127; i < kC * kF / 8; i += 128) {
    const int row = i / (kF / 8), col = (i % (kF / 8)) * 8;
    const int64_t src = start + row - s.key_delay;
    if (src >= 0 && src < s.length - s.key_delay) {
      *reinterpret_cast<uint4*>(s.phi_k_out + src * kF + col) =
          *reinterpret_cast<const uint4*>(tile + TileOffset(row, col, kSlab));
    }
  }
}

// dst = w src for a 16-byte piece (8 bf16) of a tile; dst may be src.
__device__ __forceinline__ void ScalePiece(const unsigned char* src, unsigned char* dst, float w) {
  uint4 x = *reinterpret_cast<const uint4*>(src);
  uint32_t* e = reinterpret_cast<uint32_t*>(&x);
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    const float2 f = tiles::Unpack(e[c]);
    e[c] = tiles::Pack(f.x * w, f.y * w);
  }
  *reinterpret_cast<uint4*>(dst) = x;
}

// dst = src with row r times w[r], for a [64][128] tile, by a warpgroup
// (16-byte pieces, eight a thread).
__device__ __forceinline__ void ScaleTileRows(const unsigned char* src, unsigned char* dst,
                                              const float* w) {
  for (int i = threadIdx.x & 127; i < kC * kF / 8; i += 128) {
    const int row = i / (kF / 8), at = TileOffset(row, (i % (kF / 8)) * 8, kSlab);
    ScalePiece(src + at, dst + at, w[row]);
  }
}

// The backward's normalised form: dy -> d_num = dy / z in place in a chunk's
// [64][128] tile (z: the chunk's rows), 16-byte pieces, by `threads`
// threads from `first` on. The caller fences and meets its readers at a
// barrier.
__device__ void DyToDnumInPlace(unsigned char* tile, const float* z, int first, int threads) {
  for (int i = int(threadIdx.x) - first; i < kC * kD / 8; i += threads) {
    const int row = i / (kD / 8), at = TileOffset(row, (i % (kD / 8)) * 8, kSlab);
    ScalePiece(tile + at, tile + at, z[row] != 0.f ? 1.f / z[row] : 0.f);  // 0: past the end
  }
}

// Gated, by a warpgroup of its own (BarrierState): the chunk's decays
// from its log gates lg[64], exp(b_last - b_j) for each key into
// k_dec[0..63] and exp(b_last) into k_dec[64] and chunk_dec (published by
// warp 0, which also returns b_last in last_f / last_c); then the keys
// scaled by theirs into the tile `dst`: with fused maps phi_k from the
// logits `l` (rows at or past `length` zero), else the feature tile `k`.
// The chunk starts at `start` (gates come without a key delay).
template <bool kFuse>
__device__ void ScaleKeys(const float* lg, float* k_dec, unsigned char* dst, int64_t start,
                          int64_t length, const unsigned char* k, const float (&l)[kFuse ? 32 : 1],
                          float& chunk_dec, double& last_f, int& last_c) {
  const StatePlace m;
  if (m.warp == 0) gates::PublishKeyDecays(gates::ScanGates(lg), k_dec, k_dec + kC, last_f, last_c);
  BarrierState();
  chunk_dec = k_dec[kC];
  if constexpr (kFuse) {
    bool live[2];
    float w[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 16 * m.warp + m.g + 8 * h;
      live[h] = start + row < length;
      w[h] = k_dec[row];
    }
    StorePhi<true>(l, live, w, dst);
  } else {
    ScaleTileRows(k, dst, k_dec);
  }
  wg::FenceProxyAsync();
  BarrierState();
}

// S += K^T V for one chunk, by a warpgroup holding the float32 state in st
// (StatePlace): K as the M-major A (its slab `half` holds features 64 half
// .. 64 half + 63 along the rows' bytes), V the MN-major B. Meanwhile the
// thread's feature of z (its index in the warpgroup) adds K's column sum
// (kWeighted: each key row times key_weights[row]): returns z * z_decay +
// that sum.
template <bool kWeighted = false>
__device__ float AddChunkToState(float (&st)[2][64], const unsigned char* k, const unsigned char* v,
                                 float z, float z_decay, const float* key_weights = nullptr) {
  wg::FenceOperands(st[0]);
  wg::FenceOperands(st[1]);
  wg::Fence();
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {
      wg::MmaAsyncM64N128<1, 1>(st[half],
                                wg::Descriptor(k + half * kSlab + kk * 16 * 128, kSlab, 1024),
                                wg::Descriptor(v + kk * 16 * 128, kSlab, 1024), 1);
    }
  }
  wg::Commit();
  const int f = threadIdx.x & 127;
  float sum = z_decay * z;
  for (int key = 0; key < kC; ++key) {
    const float x = __bfloat162float(*reinterpret_cast<const bf16*>(k + TileOffset(key, f, kSlab)));
    if constexpr (kWeighted) {  // (float32 weights: the d_k / d_v kernel's d_den)
      sum = fmaf(key_weights[key], x, sum);
    } else {
      sum += x;
    }
  }
  wg::Wait<0>();
  wg::FenceOperands(st[0]);
  wg::FenceOperands(st[1]);
  return sum;
}

// The state warpgroup's float32 state from the scratch
// (FoldStatesToScratch's), then a barrier of the warpgroup, after which the
// scratch may be overwritten (StoreStateBf16).
__device__ void StateFromScratch(const unsigned char* sm, float (&st)[2][64]) {
  const StatePlace m;
  const float* scratch = reinterpret_cast<const float*>(sm + kS);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int j = 0; j < kD / 8; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float2 x =
            *reinterpret_cast<const float2*>(scratch + m.Feature(half, h) * kD + m.Column(j));
        st[half][4 * j + 2 * h] = x.x;
        st[half][4 * j + 2 * h + 1] = x.y;
      }
    }
  }
  BarrierState();
}

__device__ __forceinline__ void ZeroState(float (&st)[2][64]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int i = 0; i < 64; ++i) st[half][i] = 0.f;
  }
}

// The state warpgroup's first state: zero, or the scratch's (entry), and
// its bf16 copy in state buffer 0.
__device__ __forceinline__ void StartState(unsigned char* sm, float (&st)[2][64], bool entry) {
  ZeroState(st);
  if (entry) StateFromScratch(sm, st);
  StoreStateBf16(st, sm + kS);
}

// a = X Y^T (m64n64) and acc = X S^T (m64n128) for the outputs warpgroup:
// X and Y K-major [64][128] tiles, S^T the state tile read as the K-major
// B [F][D]. Two committed groups, a's first (Wait<1> lands it).
__device__ __forceinline__ void IssueScoresAndStateT(float (&a)[32], float (&acc)[64],
                                                     const unsigned char* x, const unsigned char* y,
                                                     const unsigned char* st) {
  IssueScores(a, x, y);
  wg::Commit();
  wg::ZeroForProducts(acc);
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    wg::MmaAsyncM64N128<0, 0>(acc, wg::Descriptor(x + (kk / 4) * kSlab + (kk % 4) * 32, 16, 1024),
                              wg::Descriptor(st + (kk / 4) * kStateSlab + (kk % 4) * 32, 16, 1024),
                              1);
  }
  wg::Commit();
}

// Warpgroup 1: the block's entry state (EntryStateToScratch's, when
// `entry`) as bf16 into state buffer 0, the state after every chunk into the
// other buffer, and after the last block's last chunk the final state (kv,
// k_sum).
template <bool kFuse, bool kWindow, bool kGated>
__device__ void StateLoop(unsigned char* sm, const Ptrs& s, const ChunkedLinearParams& p,
                          int64_t bh, int blk, bool entry) {
  const int tid = threadIdx.x & 127;
  float* z_all = reinterpret_cast<float*>(sm + kZ);
  float st[2][64];  // features 0-63 and 64-127
  StartState(sm, st, entry);
  for (int c = 0; c < s.n_chunks; ++c) {
    NextChunk<kWindow>(sm, s, c);
    const unsigned char* k = sm + kK + (c & 1) * kTile;
    const unsigned char* v = sm + kV + (c & 1) * kTile;
    float l[kFuse ? 32 : 1];
    if constexpr (kFuse) {  // phi_k into its tile, zero rows past the end
      MapLogits(l, k, sm + kW + kTile);
      StoreKeyPhi(l, s, (s.c_begin + c) * kC, sm + kPhiK);
      wg::FenceProxyAsync();
      BarrierAll();  // phi_k is there for both warpgroups
      k = sm + kPhiK;
      if constexpr (!kGated) {  // (the training outputs are ungated)
        if (s.phi_k_out != nullptr) CopyKeyPhiOut(k, s, (s.c_begin + c) * kC);
      }
    }
    float chunk_dec = 1.f;
    if constexpr (kGated) {
      // The scaled keys go to a tile of their own (the outputs warpgroup
      // needs the unscaled ones for Q K^T): with fused maps this chunk's
      // query tile (read for phi_q before the phi_k barrier), else the
      // (then unused) phi_k tile.
      double last_f = 0;
      int last_c = 0;
      unsigned char* scaled = kFuse ? sm + kQ + (c & 1) * kTile : sm + kPhiK;
      ScaleKeys<kFuse>(reinterpret_cast<const float*>(sm + kGates) + (c & 1) * kC,
                       reinterpret_cast<float*>(sm + kDecays), scaled, (s.c_begin + c) * kC,
                       s.length, k, l, chunk_dec, last_f, last_c);
      k = scaled;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int i = 0; i < 64; ++i) st[half][i] *= chunk_dec;
      }
    }
    z_all[((c + 1) & 1) * kF + tid] =
        AddChunkToState(st, k, v, z_all[(c & 1) * kF + tid], chunk_dec);
    StoreStateBf16(st, sm + kS + ((c + 1) & 1) * kState);
  }
  if (blk == p.blocks - 1 && p.kv != nullptr) {
    ForStatePairs(st, [&](int f, int col, float x0, float x1) {
      tiles::StoreOut2(p.kv + (bh * kF + f) * kD + col, x0, x1);
    });
  }
  if (blk == p.blocks - 1 && p.k_sum != nullptr) {
    p.k_sum[bh * kF + tid] = z_all[(s.n_chunks & 1) * kF + tid];  // this thread wrote it
  }
}

// The (b, h) sequence and block blk of the grid: its pointers and chunks.
__device__ Ptrs PtrsOf(const ChunkedLinearParams& p, bool window, bool gated, int blk = -1) {
  if (blk < 0) blk = blockIdx.x;  // the block, else the grid's x
  const int h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = int64_t(b) * p.heads + h;
  const int64_t hk = h / (p.heads / p.k_heads), hv = h / (p.heads / p.v_heads);
  Ptrs s;
  s.length = p.length;
  s.key_delay = p.key_delay;
  s.gate = window ? p.window_gate[h] : 0.f;
  s.scale = p.window_scale;
  s.g = nullptr;
  if (gated) {
    const int64_t hg = h / (p.heads / p.g_heads);
    s.g = p.log_gamma + (int64_t(b) * p.g_heads + hg) * p.length;
  }
  const int64_t n_chunks = (p.length + kC - 1) / kC;
  s.c_begin = blk * p.block_chunks;
  s.n_chunks = static_cast<int>(std::min<int64_t>(n_chunks - s.c_begin, p.block_chunks));
  s.q = static_cast<const bf16*>(p.phi_q) + bh * p.length * kF;
  s.k = static_cast<const bf16*>(p.phi_k) + (int64_t(b) * p.k_heads + hk) * p.length * kF;
  s.v = static_cast<const bf16*>(p.v) + (int64_t(b) * p.v_heads + hv) * p.length * kD;
  s.y = p.y != nullptr ? static_cast<bf16*>(p.y) + bh * p.length * kD : nullptr;
  s.num_bf16 = p.num_bf16;
  s.num = p.num == nullptr ? nullptr
          : p.num_bf16     ? static_cast<void*>(static_cast<bf16*>(p.num) + bh * p.length * kD)
                           : static_cast<void*>(static_cast<float*>(p.num) + bh * p.length * kD);
  s.den = p.den != nullptr ? p.den + bh * p.length : nullptr;
  s.y_den = p.y_den != nullptr ? p.y_den + bh * p.length : nullptr;
  s.phi_q_out =
      p.phi_q_out != nullptr ? static_cast<bf16*>(p.phi_q_out) + bh * p.length * kF : nullptr;
  const bool first_of_group = h % (p.heads / p.k_heads) == 0;
  s.phi_k_out =
      p.phi_k_out != nullptr && first_of_group
          ? static_cast<bf16*>(p.phi_k_out) + (int64_t(b) * p.k_heads + hk) * p.length * kF
          : nullptr;
  s.row_den = s.row_z = nullptr;
  s.q2 = nullptr;
  s.reverse = false;
  return s;
}

// The maps' transposed weight of key head (b, h) (k_weight_t; kv-head
// indexed under GQA) or of query head h (q_weight_t).
__device__ const bf16* KeyMapWeight(const ChunkedLinearParams& p) {
  const int h = blockIdx.y;
  const int64_t hw = p.k_weight_heads == p.heads ? h : h / (p.heads / p.k_heads);
  return static_cast<const bf16*>(p.k_weight_t) + hw * 64 * kD;
}

// The Hedgehog logits' gradient (ChunkedLinearBwdParams::hedgehog_logits)
// of the thread's two rows (h = 0: row[0], the accumulator's row g of its
// warp's 16; h = 1: row[1], g + 8) from d_phi in acc (m64n128: column
// 8 j + 2 t + e at acc[4 j + 2 h + e]) and phi's rows in phi_tile:
//   dl = p (dp - <dp, p>) - n (dn - <dn, n>),  phi = [p, n], d_phi = [dp, dn],
// 64 columns stored from element at[h] of out (float32 or bf16) where
// inside[h]. The four threads of a row (t) reduce the dots together. With
// `dot` (the gated kernels' q_dot_dq / k_dot_dk), <phi, d_phi> = <dp, p> +
// <dn, n> goes to dot[at[h] / 64], the row's index.
__device__ __forceinline__ void StoreHedgehogLogits(const float (&acc)[64],
                                                    const unsigned char* phi_tile, void* out,
                                                    bool out_bf16, const int (&row)[2],
                                                    const int64_t (&at)[2], const bool (&inside)[2],
                                                    float* dot = nullptr) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float dot_p = 0.f, dot_n = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 p = TilePair(phi_tile, row[h], 8 * j + 2 * t);
      const float2 n = TilePair(phi_tile, row[h], 64 + 8 * j + 2 * t);
      dot_p = fmaf(p.x, acc[4 * j + 2 * h], fmaf(p.y, acc[4 * j + 2 * h + 1], dot_p));
      dot_n = fmaf(n.x, acc[4 * j + 32 + 2 * h], fmaf(n.y, acc[4 * j + 33 + 2 * h], dot_n));
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      dot_p += __shfl_xor_sync(0xffffffffu, dot_p, o);
      dot_n += __shfl_xor_sync(0xffffffffu, dot_n, o);
    }
    if (!inside[h]) continue;
    if (dot != nullptr && t == 0) dot[at[h] / 64] = dot_p + dot_n;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = 8 * j + 2 * t;
      const float2 p = TilePair(phi_tile, row[h], col), n = TilePair(phi_tile, row[h], 64 + col);
      const float* dp = acc + 4 * j + 2 * h;
      const float* dn = acc + 4 * j + 32 + 2 * h;
      tiles::StoreOut2(out, out_bf16, at[h] + col, p.x * (dp[0] - dot_p) - n.x * (dn[0] - dot_n),
                       p.y * (dp[1] - dot_p) - n.y * (dn[1] - dot_n));
    }
  }
}

// ---- the backward kernels' host side ---------------------------------------------

// What the d_q and d_k / d_v kernels cover of a backward call: bf16
// F = D = 128, d_num in bf16 or the normalised form, gates without a key
// delay, and with more than one block the forward's block states cut as
// this plan cuts (then the mma.sync kernels' workspace holds no forward
// states, and the reverse pass 1's states start it).
inline bool BackwardCovered(const ChunkedLinearBwdParams& p) {
  const bool normalised = p.d_num == nullptr;
  return p.feature_dim == kF && p.head_dim == kD &&
         (normalised ? p.dy != nullptr && p.z != nullptr : p.d_num_bf16) && p.d_den != nullptr &&
         p.phi_q != nullptr && p.phi_k != nullptr && p.v != nullptr &&
         (p.blocks == 1 ||
          (p.fwd_block_states != nullptr && p.block_chunks == p.fwd_block_chunks)) &&
         p.key_delay >= 0 &&
         (p.log_gamma == nullptr ||
          (p.key_delay == 0 && p.g_heads >= 1 && p.heads % p.g_heads == 0)) &&
         p.batch >= 1 && p.batch <= 65535 && p.heads >= 1 && p.heads <= 65535 && p.k_heads >= 1 &&
         p.v_heads >= 1 && p.heads % p.k_heads == 0 && p.heads % p.v_heads == 0 && p.length >= 1;
}

// The forward's form of a backward call (sizes, inputs, gates, key delay,
// the block plan; no outputs), with queries q.
inline ChunkedLinearParams ForwardFormOf(const ChunkedLinearBwdParams& p, const void* q) {
  ChunkedLinearParams f;
  f.phi_q = q;
  f.phi_k = p.phi_k;
  f.v = p.v;
  f.log_gamma = p.log_gamma;
  f.batch = p.batch;
  f.heads = p.heads;
  f.k_heads = p.k_heads;
  f.v_heads = p.v_heads;
  f.g_heads = p.g_heads;
  f.length = p.length;
  f.feature_dim = p.feature_dim;
  f.head_dim = p.head_dim;
  f.key_delay = p.key_delay;
  f.blocks = p.blocks;
  f.block_chunks = p.block_chunks;
  f.stream = p.stream;
  return f;
}

// Launches kernel(args) on the backward call's grid (less its first
// skip_blocks blocks) with `threads` threads and `bytes` of shared memory;
// the launch error string, or nullptr.
template <class Args>
const char* LaunchBackward(void (*kernel)(Args), const Args& args, const ChunkedLinearBwdParams& p,
                           int threads, int bytes, int skip_blocks = 0) {
  if (p.blocks < 1 || p.block_chunks < 1 || p.blocks * p.block_chunks < (p.length + kC - 1) / kC) {
    return "call PlanChunkedLinearBwd before launching";
  }
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const dim3 grid(static_cast<unsigned>(p.blocks - skip_blocks), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  kernel<<<grid, threads, bytes, static_cast<cudaStream_t>(p.stream)>>>(args);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace
}  // namespace linearize::kernels
