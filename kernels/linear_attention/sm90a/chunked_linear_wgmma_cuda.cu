// Chunked causal (optionally gated) linear attention, bf16, F = D = 128, on
// wgmma (chunked_linear_wgmma.h). One CTA of two warpgroups per (b, h) walks
// the 64-token chunks:
//   warpgroup 0, the outputs: A = Q K^T masked to j <= i (registers), then
//     num = Q S + A V (A straight from registers) and den = Q . z + the rows'
//     sums of A; y = num / (den + eps), and/or num and den themselves (the
//     training forms).
//   warpgroup 1, the state: S' = S + K^T V (the float32 128 x 128 state in its
//     registers) and z' = z + K's column sums, written as bf16 S' and float
//     z' into the other state buffer, which the next chunk's outputs read.
// So the two overlap: chunk i's outputs read state buffer i % 2 while the
// state warpgroup writes buffer (i + 1) % 2; one barrier per chunk. Long
// sequences with few (b, h) take the mma.sync kernel's two-pass split (its
// plan and workspace): pass 1 (ChunkedLinearWgmmaStatesKernel, the state
// warpgroup's loop alone) writes the block states, and each block here
// starts from the sum of the earlier ones (and the initial state, if any). The Q, K
// and V tiles are double-buffered by cp.async (all 256 threads) in
// 128-byte-swizzled shared memory (wgmma.cuh): K serves as the K-major B of
// Q K^T and as the M-major A of K^T V, V as the MN-major B of A V and K^T V.
//
// Gates (kGated): the outputs warpgroup weights A by exp(b_i - b_j) and the
// state's terms by exp(b_i) (b the in-chunk prefix of the log gates,
// chunk_gates.cuh); the state warpgroup decays the state by the chunk and
// scales the keys by exp(b_last - b_j) into a tile of their own.
//
// Fused Hedgehog maps (kFuse): the tiles hold raw q and k, and each
// warpgroup first maps its own: the outputs warpgroup phi_q = [softmax(q
// W_q), softmax(-q W_q)], kept in registers as the A fragments of Q K^T and
// Q S (it never touches shared memory); the state warpgroup phi_k, written
// to a tile (zero rows past the end) that both then read, after a second
// barrier.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/feature_map/hedgehog_rows.cuh"
#include "kernels/linear_attention/chunk_gates.cuh"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"
#include "kernels/linear_attention/tile_mma.cuh"
#include "kernels/linear_attention/wgmma.cuh"
#include "kernels/linear_attention/window_mask.cuh"

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
// The d_q kernel (DqLoop) adds each chunk's d_den and z rows [2][2][64] at
// kDqRows, and takes the (unfused) map weights' tiles at kW for phi_q.
constexpr int kDqRows = kDecays + (kC + 4) * 4, kDqBytes = kBytes + 2 * 2 * kC * 4;
static_assert(kDqBytes <= 227 * 1024, "shared memory");

// Byte offset of (row, col) in a tile of 64-column slabs, `slab` bytes each.
__device__ __forceinline__ int TileOffset(int row, int col, int slab) {
  return (col >> 6) * slab + wg::SwizzledOffset(row, col & 63);
}

// Rows [start, start + 64) of a [T][128] bf16 matrix into a tile (zeros
// before 0 and at or past `limit`), asynchronously, by `threads` threads
// from `first` on (the caller is one of them).
__device__ void IssueTile(unsigned char* tile, const bf16* src, int64_t start, int64_t limit,
                          int first = 0, int threads = kThreads) {
  for (int i = int(threadIdx.x) - first; i < kC * 16; i += threads) {
    const int row = i >> 4, col = (i & 15) * 8;
    const int64_t r = start + row;
    const bool valid = r >= 0 && r < limit;
    tiles::CpAsync16(tile + TileOffset(row, col, kSlab), src + (valid ? r : 0) * 128 + col, valid);
  }
}

// All 256 threads (a named barrier: the warpgroups reach it from their own loops).
__device__ __forceinline__ void BarrierAll() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(kThreads) : "memory");
}

struct Ptrs {
  const bf16 *q, *k, *v;
  bf16* y;    // or null
  void* num;  // or null: float32, or bf16 with num_bf16
  bool num_bf16;
  float* den;  // or null
  int64_t length;
  int64_t key_delay;  // position t reads the key and value of t - key_delay
  int64_t c_begin;    // the block's first chunk
  int n_chunks;       // the block's chunks
  float gate, scale;  // the fused window's g_h and 1 / sqrt(D)
  const float* g;     // gated: this (b, h)'s log gates [T], else null
  // The d_q kernel's per-query rows, or null: d_den [T], the normalised
  // form's z [T], phi_q [T][128] (gated: for q . d_q).
  const float *row_den, *row_z;
  const bf16* phi_q;
};

// Chunk i of the block (local index)'s keys and values into the tiles k and
// v, and its log gates (gated) into g_tile[64], asynchronously, by `threads`
// threads from `first` on (not committed). Key row r at position start + r
// holds source start + r - delay, zero unless that source is >= 0 and the
// position is < length; with the fused window (raw_keys_to_end) the keys
// run to the sequence's end (the window's), and the map zeroes the later
// positions' features.
__device__ void IssueKeys(unsigned char* k, unsigned char* v, float* g_tile, const Ptrs& s, int i,
                          bool raw_keys_to_end, int first, int threads) {
  const int64_t start = (s.c_begin + i) * kC;
  const int64_t src = start - s.key_delay;
  const int64_t limit = raw_keys_to_end ? s.length : s.length - s.key_delay;
  IssueTile(k, s.k, src, limit, first, threads);
  IssueTile(v, s.v, src, limit, first, threads);
  const int lane = int(threadIdx.x) - first;  // gated: 0 past the end (a gate of 1)
  if (s.g != nullptr && lane >= 0 && lane < kC) {
    const int64_t t = start + lane;
    tiles::CpAsync4(g_tile + lane, s.g + (t < s.length ? t : 0), t < s.length);
  }
}

// The parts of chunk i of the block into tile buffer i % 2, asynchronously,
// by `threads` threads from `first` on: the queries and/or the keys and
// values (IssueKeys).
__device__ void IssueChunk(unsigned char* sm, const Ptrs& s, int i, bool queries, bool keys,
                           bool raw_keys_to_end, int first = 0, int threads = kThreads) {
  const int buf = i & 1;
  if (queries) {
    const int64_t start = (s.c_begin + i) * kC;
    IssueTile(sm + kQ + buf * kTile, s.q, start, s.length, first, threads);
    if (s.phi_q != nullptr)
      IssueTile(sm + kW + buf * kTile, s.phi_q, start, s.length, first, threads);
    const int lane = int(threadIdx.x) - first;  // d_q: the rows' scalars, 0 past the end
    if (s.row_den != nullptr && lane >= 0 && lane < kC) {
      const int64_t t = start + lane;
      float* rows = reinterpret_cast<float*>(sm + kDqRows) + buf * 2 * kC;
      tiles::CpAsync4(rows + lane, s.row_den + (t < s.length ? t : 0), t < s.length);
      if (s.row_z != nullptr) {
        tiles::CpAsync4(rows + kC + lane, s.row_z + (t < s.length ? t : 0), t < s.length);
      }
    }
  }
  if (keys) {
    IssueKeys(sm + kK + buf * kTile, sm + kV + buf * kTile,
              reinterpret_cast<float*>(sm + kGates) + buf * kC, s, i, raw_keys_to_end, first,
              threads);
  }
  tiles::CpAsyncCommit();
}

// Waits for chunk i's tiles (this thread's copies, then everyone's), and
// issues chunk i + 1's. With the fused window the outputs warpgroup issues
// the keys and values (the window waits for them within the chunk, on its
// own), also past the block's last chunk (the window's current keys are the
// next chunk's delayed ones), and the state warpgroup the queries.
template <bool kWindow>
__device__ void NextChunk(unsigned char* sm, const Ptrs& s, int i) {
  tiles::CpAsyncWaitAll();
  wg::FenceProxyAsync();  // the copies and the state writes, before the tensor cores read them
  BarrierAll();
  if constexpr (kWindow) {
    if (threadIdx.x < 128) {
      IssueChunk(sm, s, i + 1, false, true, true, 0, 128);
    } else if (i + 1 < s.n_chunks) {
      IssueChunk(sm, s, i + 1, true, false, true, 128, 128);
    }
  } else if (i + 1 < s.n_chunks) {
    IssueChunk(sm, s, i + 1, true, true, false);
  }
}

// Fused maps: a warpgroup's logits l = x W for the chunk's 64 rows (x a
// K-major [64][128] tile, W^T [64][128] the K-major B), m64n64
// accumulators (rows 16 w + g + 8 h, columns 8 j + 2 t + e).
__device__ void MapLogits(float (&l)[32], const unsigned char* x, const unsigned char* w_t) {
  wg::ZeroForProducts(l);
#pragma unroll
  for (int kk = 0; kk < kF / 16; ++kk) {
    const int at = (kk / 4) * kSlab + (kk % 4) * 32;
    wg::MmaAsyncM64N64<0, 0>(l, wg::Descriptor(x + at, 16, 1024),
                             wg::Descriptor(w_t + at, 16, 1024), 1);
  }
  wg::Commit();
  wg::Wait<0>();
  wg::FenceOperands(l);
}

// Each row's softmax over l and over -l (Hedgehog's phi = [p, n]), for
// both of the thread's rows (h = 0: row g, 1: row g + 8).
struct RowSoftmax {
  hedgehog::RowHalfSoftmax row[2];
  __device__ explicit RowSoftmax(const float (&l)[32]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row[h] = hedgehog::RowHalfSoftmaxOf<8>([&](int j, int i) { return l[4 * j + i]; }, h);
    }
  }
  __device__ float P(float x, int h) const { return row[h].P(x); }
  __device__ float N(float x, int h) const { return row[h].N(x); }
};

// LoLCATs' window (fused maps, key delay 64), by the outputs warpgroup after
// the linear terms: the band is this chunk's delayed raw keys (the previous
// chunk's, in this buffer) and the next buffer's (this chunk's, which this
// warpgroup loaded and now waits for on its own). Row i sees the previous
// chunk's key j for j > i (and position >= 0), this chunk's for j <= i;
// scores q k * scale, the row's exact max c, weights g exp(s - c) added into
// num through both value tiles, their sums into den_w.
__device__ void WindowIntoNum(unsigned char* sm, const Ptrs& s, int c, float (&num)[64],
                              float (&den_w)[2]) {
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  tiles::CpAsyncWaitAll();  // this warpgroup's copies of the next keys and values
  wg::FenceProxyAsync();
  asm volatile("bar.sync 3, 128;\n" ::: "memory");  // the outputs warpgroup alone
  const unsigned char* q = sm + kQ + (c & 1) * kTile;
  const unsigned char* k_prev = sm + kK + (c & 1) * kTile;
  const unsigned char* k_cur = sm + kK + ((c + 1) & 1) * kTile;
  float sp[32], sc[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) sp[i] = sc[i] = 0.f;
  wg::FenceOperands(sp);
  wg::FenceOperands(sc);
  wg::Fence();
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const int at = (kk / 4) * kSlab + (kk % 4) * 32;
    const uint64_t dq = wg::Descriptor(q + at, 16, 1024);
    wg::MmaAsyncM64N64<0, 0>(sp, dq, wg::Descriptor(k_prev + at, 16, 1024), 1);
    wg::MmaAsyncM64N64<0, 0>(sc, dq, wg::Descriptor(k_cur + at, 16, 1024), 1);
  }
  wg::Commit();
  wg::Wait<0>();
  wg::FenceOperands(sp);
  wg::FenceOperands(sc);
  const bool first_chunk = s.c_begin + c == 0;  // no previous chunk
  const float c2 = s.scale * window::kLog2e;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = 16 * warp + g + 8 * h;
    float mx = -INFINITY;  // of the unscaled scores; the row sees its own key
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = 8 * j + 2 * t + e, at = 4 * j + 2 * h + e;
        sp[at] = !first_chunk && col > row ? sp[at] : -INFINITY;
        sc[at] = col <= row ? sc[at] : -INFINITY;
        mx = fmaxf(mx, fmaxf(sp[at], sc[at]));
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float b = window::Exp2Offset(mx * s.scale, s.gate);  // weights g exp(s scale - c)
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int at = 4 * j + 2 * h + e;
        sp[at] = window::Exp2(fmaf(sp[at], c2, -b));
        sc[at] = window::Exp2(fmaf(sc[at], c2, -b));
        sum += sp[at] + sc[at];
      }
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    den_w[h] = sum;
  }
  uint32_t fp[4][4], fc[4][4];  // the weights as A fragments, 16 keys a k step
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      fp[kk][r] = tiles::Pack(sp[8 * kk + 2 * r], sp[8 * kk + 2 * r + 1]);
      fc[kk][r] = tiles::Pack(sc[8 * kk + 2 * r], sc[8 * kk + 2 * r + 1]);
    }
  }
  const unsigned char* v_prev = sm + kV + (c & 1) * kTile;
  const unsigned char* v_cur = sm + kV + ((c + 1) & 1) * kTile;
  wg::FenceOperands(num);
  wg::Fence();
#pragma unroll
  for (int kk = 0; kk < kC / 16; ++kk) {
    wg::MmaAsyncRegAM64N128<1>(num, fp[kk], wg::Descriptor(v_prev + kk * 16 * 128, kSlab, 1024), 1);
    wg::MmaAsyncRegAM64N128<1>(num, fc[kk], wg::Descriptor(v_cur + kk * 16 * 128, kSlab, 1024), 1);
  }
  wg::Commit();
  wg::Wait<0>();
  wg::FenceOperands(num);
}

// The outputs warpgroup's scores a (m64n64 accumulators: rows 16 w + g +
// 8 h, columns 8 j + 2 t + e) of a gated chunk: a_ij times exp(b_i - b_j)
// for j <= i (b the in-chunk prefixes of the log gates lg[64], this warp's
// own scan, chunk_gates.cuh), and q_dec[h] = exp(b_i) of the thread's rows.
__device__ __forceinline__ void DecayScores(const float* lg, float (&a)[32], float (&q_dec)[2]) {
  const int warp = (threadIdx.x & 127) >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const gates::Prefix pre = gates::ScanGates(lg);
  const bool rows_hi = warp >= 2;  // the warp's rows in the chunk's second half
  float ei[2];
  int ci[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = 16 * warp + g + 8 * h;
    const double fi = __shfl_sync(0xffffffffu, rows_hi ? pre.f1 : pre.f0, i & 31);
    ei[h] = __shfl_sync(0xffffffffu, rows_hi ? pre.e1 : pre.e0, i & 31);
    ci[h] = __shfl_sync(0xffffffffu, rows_hi ? pre.c1 : pre.c0, i & 31);
    q_dec[h] = ci[h] ? 0.f : __expf(float(fi));
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = 8 * j + 2 * t + e;
      const float ej = __shfl_sync(0xffffffffu, j >= 4 ? pre.e1 : pre.e0, col & 31);
      const int cj = __shfl_sync(0xffffffffu, j >= 4 ? pre.c1 : pre.c0, col & 31);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (col <= 16 * warp + g + 8 * h)
          a[4 * j + 2 * h + e] *= gates::Decay2(ei[h], ci[h], ej, cj);
      }
    }
  }
}

// The causal mask on the scores a (as DecayScores), then a as bf16 A
// fragments of a register-A product (wgmma.cuh: af[kk] covers k step kk).
__device__ __forceinline__ void MaskAndPack(float (&a)[32], uint32_t (&af)[4][4]) {
  const int warp = (threadIdx.x & 127) >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + g + 8 * (e / 2), col = 8 * j + 2 * t + (e & 1);
      if (col > row) a[4 * j + e] = 0.f;
    }
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int r = 0; r < 4; ++r) af[kk][r] = tiles::Pack(a[8 * kk + 2 * r], a[8 * kk + 2 * r + 1]);
  }
}

// Warpgroup 0: the outputs of every chunk.
template <bool kFuse, bool kWindow, bool kGated>
__device__ void OutputsLoop(unsigned char* sm, const Ptrs& s, float eps) {
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const float* z_all = reinterpret_cast<const float*>(sm + kZ);
  for (int c = 0; c < s.n_chunks; ++c) {
    NextChunk<kWindow>(sm, s, c);
    const unsigned char* q = sm + kQ + (c & 1) * kTile;
    const unsigned char* k = sm + kK + (c & 1) * kTile;
    const unsigned char* v = sm + kV + (c & 1) * kTile;
    const unsigned char* st = sm + kS + (c & 1) * kState;
    const float* z = z_all + (c & 1) * kF;

    // A = Q K^T and Q . z. Without fused maps, Q and K are both K-major tiles
    // (features along the rows); with them, phi_q's A fragments (pq, k steps
    // 0-3 the p half, 4-7 the n half) and the state warpgroup's phi_k tile.
    float a[32];
    float qz[2] = {0.f, 0.f};
    uint32_t pq[kFuse ? 8 : 1][4];
    if constexpr (kFuse) {
      float l[32], n[32];  // phi_q's halves: l becomes softmax(l) in place, n softmax(-l)
      MapLogits(l, q, sm + kW);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        hedgehog::RowHalfPhiInPlace<8>([&](int j, int i) -> float& { return l[4 * j + i]; },
                                       [&](int j, int i) -> float& { return n[4 * j + i]; }, h);
      }
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // A register i: tile 2 kk + i / 2, row half i % 2
          const int j = 2 * kk + i / 2, h = i % 2, col = 8 * j + 2 * t, at = 4 * j + 2 * h;
          const float p0 = l[at], p1 = l[at + 1], n0 = n[at], n1 = n[at + 1];
          pq[kk][i] = tiles::Pack(p0, p1);
          pq[4 + kk][i] = tiles::Pack(n0, n1);
          qz[h] += p0 * z[col] + p1 * z[col + 1] + n0 * z[64 + col] + n1 * z[64 + col + 1];
        }
      }
      BarrierAll();  // the state warpgroup's phi_k tile is written
    }
    wg::ZeroForProducts(a);
#pragma unroll
    for (int kk = 0; kk < kF / 16; ++kk) {
      const int at = (kk / 4) * kSlab + (kk % 4) * 32;
      if constexpr (kFuse) {
        wg::MmaAsyncRegAM64N64<0>(a, pq[kk], wg::Descriptor(sm + kPhiK + at, 16, 1024), 1);
      } else {
        wg::MmaAsyncM64N64<0, 0>(a, wg::Descriptor(q + at, 16, 1024),
                                 wg::Descriptor(k + at, 16, 1024), 1);
      }
    }
    wg::Commit();
    if constexpr (!kFuse) {  // meanwhile Q . z: four threads a row, 32 features each
#pragma unroll
      for (int f = 32 * t; f < 32 * t + 32; f += 8) {  // 16-byte pieces
        const float4 z0 = *reinterpret_cast<const float4*>(z + f);
        const float4 z1 = *reinterpret_cast<const float4*>(z + f + 4);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint4 x =
              *reinterpret_cast<const uint4*>(q + TileOffset(16 * warp + g + 8 * h, f, kSlab));
          const float2 a = tiles::Unpack(x.x), b = tiles::Unpack(x.y);
          const float2 c = tiles::Unpack(x.z), d = tiles::Unpack(x.w);
          qz[h] += a.x * z0.x + a.y * z0.y + b.x * z0.z + b.y * z0.w + c.x * z1.x + c.y * z1.y +
                   d.x * z1.z + d.y * z1.w;
        }
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      qz[h] += __shfl_xor_sync(0xffffffffu, qz[h], 1);
      qz[h] += __shfl_xor_sync(0xffffffffu, qz[h], 2);
    }
    wg::Wait<0>();
    wg::FenceOperands(a);

    float q_dec[2] = {1.f, 1.f};  // gated: exp(b_i) of the thread's rows
    if constexpr (kGated) {
      DecayScores(reinterpret_cast<const float*>(sm + kGates) + (c & 1) * kC, a, q_dec);
      qz[0] *= q_dec[0];
      qz[1] *= q_dec[1];
    }
    uint32_t af[4][4];
    MaskAndPack(a, af);

    // num = Q S (S: MN-major, its rows the features) + A V (V: MN-major).
    float num[64];
    wg::ZeroForProducts(num);
#pragma unroll
    for (int kk = 0; kk < kF / 16; ++kk) {
      const uint64_t ds = wg::Descriptor(st + kk * 16 * 128, kStateSlab, 1024);
      if constexpr (kFuse) {
        wg::MmaAsyncRegAM64N128<1>(num, pq[kk], ds, 1);
      } else {
        wg::MmaAsyncM64N128<0, 1>(
            num, wg::Descriptor(q + (kk / 4) * kSlab + (kk % 4) * 32, 16, 1024), ds, 1);
      }
    }
    if constexpr (kGated) {  // Q S's rows times exp(b_i) before A V adds in
      wg::Commit();
      wg::Wait<0>();
      wg::FenceOperands(num);
#pragma unroll
      for (int j = 0; j < kD / 8; ++j) {
        num[4 * j] *= q_dec[0];
        num[4 * j + 1] *= q_dec[0];
        num[4 * j + 2] *= q_dec[1];
        num[4 * j + 3] *= q_dec[1];
      }
      wg::FenceOperands(num);
      wg::Fence();
    }
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {
      wg::MmaAsyncRegAM64N128<1>(num, af[kk], wg::Descriptor(v + kk * 16 * 128, kSlab, 1024), 1);
    }
    // The rows' sums of the same bf16 weights that A V takes (a ones column
    // on mma.sync, as that kernel's den): y = num / den stays a weighted
    // mean of the values. Summing the unrounded float32 A puts the gated
    // training gradients past their bound. rs[0] row g, rs[2] row g + 8.
    float rs[4] = {0.f, 0.f, 0.f, 0.f};
    constexpr uint32_t kOnes = 0x3f803f80u;  // bf16 pair (1, 1)
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) tiles::Mma(rs, af[kk], kOnes, kOnes);
    wg::Commit();
    wg::Wait<0>();
    wg::FenceOperands(num);
    float den_w[2] = {0.f, 0.f};
    if constexpr (kWindow) WindowIntoNum(sm, s, c, num, den_w);

#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 16 * warp + g + 8 * h;
      const int64_t pos = (s.c_begin + c) * kC + row;
      const float den = qz[h] + rs[2 * h];
      if (pos < s.length && s.y != nullptr) {
        // The window's denominator is >= g (the row's own key): no eps.
        const float inv = kWindow ? 1.f / (den + den_w[h]) : 1.f / (den + eps);
        bf16* out = s.y + pos * kD;
#pragma unroll
        for (int j = 0; j < kD / 8; ++j) {
          tiles::StoreOut2(out + 8 * j + 2 * t, num[4 * j + 2 * h] * inv,
                           num[4 * j + 2 * h + 1] * inv);
        }
      }
      if constexpr (!kWindow) {  // the training forms' raw terms
        if (pos < s.length && s.num != nullptr) {
#pragma unroll
          for (int j = 0; j < kD / 8; ++j) {
            tiles::StoreOut2(s.num, s.num_bf16, pos * kD + 8 * j + 2 * t, num[4 * j + 2 * h],
                             num[4 * j + 2 * h + 1]);
          }
        }
        if (pos < s.length && s.den != nullptr && t == 0) s.den[pos] = den;
      }
    }
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

// The block's entry state, by all threads, into float32 [F][D] scratch over
// both state buffers (64 KB, unused yet) and z buffer 0: the initial state
// plus the earlier blocks' local states (pass 1's), rows [F][D + 8] with kv
// in the columns < D and k_sum in
// column D, each earlier block's sum decayed by the blocks after it (pass
// 1's total decays). False (and z zeroed) when the block starts from zero.
constexpr int kRowCols = kD + 8;  // ChunkedLinearInitialStateCols
__device__ bool EntryStateToScratch(unsigned char* sm, const ChunkedLinearParams& p, int64_t bh,
                                    int blk) {
  const bool any = p.initial_state != nullptr || blk > 0;
  const float* initial =
      p.initial_state != nullptr ? p.initial_state + bh * kF * kRowCols : nullptr;
  const float* blocks = static_cast<const float*>(p.workspace) + bh * p.blocks * kF * kRowCols;
  // Each block's total decay (1 ungated), after all the states.
  const float* decays = static_cast<const float*>(p.workspace) +
                        p.batch * p.heads * p.blocks * kF * kRowCols + bh * p.blocks;
  float* scratch = reinterpret_cast<float*>(sm + kS);
  float* z = reinterpret_cast<float*>(sm + kZ);
  if (any) {
    for (int i = threadIdx.x; i < kF * kD / 4; i += kThreads) {
      const int row = i / (kD / 4) * kRowCols + (i % (kD / 4)) * 4;
      float4 sum = initial != nullptr ? *reinterpret_cast<const float4*>(initial + row)
                                      : make_float4(0.f, 0.f, 0.f, 0.f);
      for (int a = 0; a < blk; ++a) {  // the running sum decays by each block's total decay
        const float4 x = *reinterpret_cast<const float4*>(blocks + a * kF * kRowCols + row);
        const float keep = decays[a];
        sum.x = fmaf(keep, sum.x, x.x), sum.y = fmaf(keep, sum.y, x.y);
        sum.z = fmaf(keep, sum.z, x.z), sum.w = fmaf(keep, sum.w, x.w);
      }
      reinterpret_cast<float4*>(scratch)[i] = sum;
    }
  }
  for (int f = threadIdx.x; f < kF; f += kThreads) {
    float sum = initial != nullptr ? initial[f * kRowCols + kD] : 0.f;
    for (int a = 0; a < blk; ++a) {
      sum = fmaf(decays[a], sum, blocks[a * kF * kRowCols + f * kRowCols + kD]);
    }
    z[f] = sum;
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
// times w[h] if kScaled.
template <bool kScaled>
__device__ void StorePhi(const float (&l)[32], const bool (&live)[2], const float (&w)[2],
                         unsigned char* dst) {
  const StatePlace m;
  const RowSoftmax r(l);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = 16 * m.warp + m.g + 8 * h;
    const float s = kScaled ? w[h] : 1.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float x0 = l[4 * j + 2 * h], x1 = l[4 * j + 2 * h + 1];
      const int col = m.Column(j);
      *reinterpret_cast<uint32_t*>(dst + TileOffset(row, col, kSlab)) =
          live[h] ? tiles::Pack(r.P(x0, h) * s, r.P(x1, h) * s) : 0u;
      *reinterpret_cast<uint32_t*>(dst + TileOffset(row, 64 + col, kSlab)) =
          live[h] ? tiles::Pack(r.N(x0, h) * s, r.N(x1, h) * s) : 0u;
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

// Gated, by a warpgroup of its own (named barrier 2): the chunk's decays
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
  asm volatile("bar.sync 2, 128;\n" ::: "memory");
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
    // 16-byte pieces (8 features: a swizzle unit), eight a thread.
    for (int i = threadIdx.x & 127; i < kC * kF / 8; i += 128) {
      const int row = i / (kF / 8), col = (i % (kF / 8)) * 8;
      const int at = TileOffset(row, col, kSlab);
      const float w = k_dec[row];
      uint4 x = *reinterpret_cast<const uint4*>(k + at);
      uint32_t* e = reinterpret_cast<uint32_t*>(&x);
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float2 f = tiles::Unpack(e[c]);
        e[c] = tiles::Pack(f.x * w, f.y * w);
      }
      *reinterpret_cast<uint4*>(dst + at) = x;
    }
  }
  wg::FenceProxyAsync();
  asm volatile("bar.sync 2, 128;\n" ::: "memory");
}

// S += K^T V for one chunk, by a warpgroup holding the float32 state in st
// (StatePlace): K as the M-major A (its slab `half` holds features 64 half
// .. 64 half + 63 along the rows' bytes), V the MN-major B. Meanwhile the
// thread's feature of z (its index in the warpgroup) adds K's column sum:
// returns z * z_decay + that sum.
__device__ float AddChunkToState(float (&st)[2][64], const unsigned char* k, const unsigned char* v,
                                 float z, float z_decay) {
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
    sum += __bfloat162float(*reinterpret_cast<const bf16*>(k + TileOffset(key, f, kSlab)));
  }
  wg::Wait<0>();
  wg::FenceOperands(st[0]);
  wg::FenceOperands(st[1]);
  return sum;
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
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int i = 0; i < 64; ++i) st[half][i] = 0.f;
  }
  if (entry) {  // from the scratch, then (once every state thread has read) the bf16 tile
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
    asm volatile("bar.sync 2, 128;\n" ::: "memory");  // the state warpgroup alone
  }
  StoreStateBf16(st, sm + kS);
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
__device__ Ptrs PtrsOf(const ChunkedLinearParams& p, bool window, bool gated) {
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
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
  s.row_den = s.row_z = nullptr;
  s.phi_q = nullptr;
  return s;
}

// The maps' transposed weight of key head (b, h) (k_weight_t; kv-head
// indexed under GQA) or of query head h (q_weight_t).
__device__ const bf16* KeyMapWeight(const ChunkedLinearParams& p) {
  const int h = blockIdx.y;
  const int64_t hw = p.k_weight_heads == p.heads ? h : h / (p.heads / p.k_heads);
  return static_cast<const bf16*>(p.k_weight_t) + hw * 64 * kD;
}

// kFuse: raw q and k (D = 128 columns) and the maps' W^T (Fh = 64);
// kWindow (with kFuse, key_delay 64): LoLCATs' window fused; kGated: log
// gates (no key delay, no window).
template <bool kFuse, bool kWindow, bool kGated>
__global__ void __launch_bounds__(kThreads, 1)
    ChunkedLinearWgmmaKernel(const __grid_constant__ ChunkedLinearParams p) {
  static_assert(kFuse || !kWindow, "the window reads the raw keys of the fused maps");
  static_assert(!(kWindow && kGated), "LoLCATs' window is ungated");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int blk = blockIdx.x;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  const Ptrs s = PtrsOf(p, kWindow, kGated);
  if constexpr (kFuse) {  // the maps' weights, in the first chunk's group
    IssueTile(sm + kW, static_cast<const bf16*>(p.q_weight_t) + int64_t(blockIdx.y) * 64 * kD, 0,
              64);
    IssueTile(sm + kW + kTile, KeyMapWeight(p), 0, 64);
  }
  // The block's first tiles, and its entry state; the state warpgroup turns
  // it into bf16 state buffer 0 before the first chunk's barrier.
  IssueChunk(sm, s, 0, true, true, kWindow);
  const bool entry = EntryStateToScratch(sm, p, bh, blk);
  BarrierAll();
  if (threadIdx.x < 128) {
    OutputsLoop<kFuse, kWindow, kGated>(sm, s, p.eps);
  } else {
    StateLoop<kFuse, kWindow, kGated>(sm, s, p, bh, blk, entry);
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

// ---- pass 1 -------------------------------------------------------------------------
// The local state of every block but the last, and its total decay, into
// the workspace (EntryStateToScratch's layout: [F][D + 8] rows, kv in the
// columns < D, k_sum in column D, zeros after), by one warpgroup: the
// state warpgroup's loop alone, its keys and values double-buffered, so
// that two CTAs share an SM. Shared memory (from a 1024-aligned base): K
// and V tiles of two buffers, the phi_k (or scaled keys) tile, the key
// map's W^T, the log gates [2][64] and the key decays [64 + 1].
constexpr int kStatesThreads = 128;
constexpr int kSK = 0, kSV = 2 * kTile, kSPhi = 4 * kTile, kSW = 5 * kTile;
constexpr int kSGates = 6 * kTile, kSDecays = kSGates + 2 * kC * 4;
constexpr int kStatesBytes = kSDecays + (kC + 4) * 4 + 1024;
static_assert(2 * kStatesBytes <= 227 * 1024, "two pass-1 CTAs an SM");

template <bool kFuse, bool kGated>
__global__ void __launch_bounds__(kStatesThreads, 2)
    ChunkedLinearWgmmaStatesKernel(const __grid_constant__ ChunkedLinearParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int tid = threadIdx.x;
  const Ptrs s = PtrsOf(p, false, kGated);
  const auto issue = [&](int i) {
    const int buf = i & 1;
    IssueKeys(sm + kSK + buf * kTile, sm + kSV + buf * kTile,
              reinterpret_cast<float*>(sm + kSGates) + buf * kC, s, i, false, 0, kStatesThreads);
    tiles::CpAsyncCommit();
  };
  if constexpr (kFuse) IssueTile(sm + kSW, KeyMapWeight(p), 0, 64, 0, kStatesThreads);
  issue(0);
  float st[2][64];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int i = 0; i < 64; ++i) st[half][i] = 0.f;
  }
  float z = 0.f;       // feature tid's
  double total_f = 0;  // the block's log decay (thread 0's), and its -inf gates
  int total_c = 0;
  for (int c = 0; c < s.n_chunks; ++c) {
    tiles::CpAsyncWaitAll();
    wg::FenceProxyAsync();
    __syncthreads();  // everyone's copies; the other buffer's last reads are done
    if (c + 1 < s.n_chunks) issue(c + 1);
    const unsigned char* k = sm + kSK + (c & 1) * kTile;
    const unsigned char* v = sm + kSV + (c & 1) * kTile;
    float l[kFuse ? 32 : 1];
    if constexpr (kFuse) MapLogits(l, k, sm + kSW);
    float chunk_dec = 1.f;
    if constexpr (kGated) {
      double last_f = 0;  // warp 0's
      int last_c = 0;
      ScaleKeys<kFuse>(reinterpret_cast<const float*>(sm + kSGates) + (c & 1) * kC,
                       reinterpret_cast<float*>(sm + kSDecays), sm + kSPhi, (s.c_begin + c) * kC,
                       s.length, k, l, chunk_dec, last_f, last_c);
      total_f += last_f;
      total_c += last_c;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int i = 0; i < 64; ++i) st[half][i] *= chunk_dec;
      }
      k = sm + kSPhi;
    } else if constexpr (kFuse) {
      StoreKeyPhi(l, s, (s.c_begin + c) * kC, sm + kSPhi);
      wg::FenceProxyAsync();
      __syncthreads();
      k = sm + kSPhi;
    }
    z = AddChunkToState(st, k, v, z, chunk_dec);
  }
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  const int64_t slot = bh * p.blocks + blockIdx.x;
  float* rows = static_cast<float*>(p.workspace) + slot * kF * kRowCols;
  ForStatePairs(st, [&](int f, int col, float x0, float x1) {
    tiles::StoreOut2(rows + f * kRowCols + col, x0, x1);
  });
  float* z_row = rows + tid * kRowCols + kD;  // k_sum, then the zero columns the backward reads
  z_row[0] = z;
#pragma unroll
  for (int i = 1; i < kRowCols - kD; ++i) z_row[i] = 0.f;
  if (tid == 0) {
    float* decays = static_cast<float*>(p.workspace) + p.batch * p.heads * p.blocks * kF * kRowCols;
    decays[slot] = total_c > 0 ? 0.f : float(exp(total_f));
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

// Pass 1 (blocks > 1).
cudaError_t LaunchStates(const ChunkedLinearParams& p) {
  if (p.blocks <= 1) return cudaSuccess;
  const bool fuse = p.q_weight_t != nullptr, gated = p.log_gamma != nullptr;
  auto* kernel = gated ? (fuse ? ChunkedLinearWgmmaStatesKernel<true, true>
                               : ChunkedLinearWgmmaStatesKernel<false, true>)
                       : (fuse ? ChunkedLinearWgmmaStatesKernel<true, false>
                               : ChunkedLinearWgmmaStatesKernel<false, false>);
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kStatesBytes);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(p.blocks - 1), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  kernel<<<grid, kStatesThreads, kStatesBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
  return cudaGetLastError();
}

// ---- d_q ----------------------------------------------------------------------------
// The backward's d_q (chunked_linear_bwd_params.h) is the forward's two
// warpgroups with another outputs loop. The state warpgroup runs unchanged
// on the forward's keys and values: S = sum k^T v and z = sum k, decayed.
// The query tile holds d_num (bf16), or dy in the normalised form, which
// this warpgroup turns into d_num = dy / z in place; with d_den_i and
// q_dec_i = exp(b_i),
//   A'_ij = w_ij (d_num_i . v_j + d_den_i)            (j <= i)
//   d_q_i = q_dec_i (d_num_i S^T + d_den_i z) + sum_j A'_ij k_j.
// d_num, d_den and z are taken in bf16, as the mma.sync kernels take them
// (d_num and d_den as one bf16 tile, z as the bf16 state's column): the
// gates' gradient is the difference of q . d_q and the d_k kernel's k . d_k,
// whose terms cancel only when both kernels round alike.
struct DqArgs {
  // The forward's form: phi_q = D, workspace = the forward's block states
  // (blocks > 1), no outputs.
  ChunkedLinearParams fwd;
  const float* d_den;  // [B, H, T]
  const float* z;      // normalised: [B, H, T], else null
  const bf16* phi_q;   // [B, H, T, F], read for q_dot
  void* d_q;           // [B, H, T, F], float32 or bf16 (d_q_bf16)
  bool d_q_bf16;
  float* q_dot;  // optional [B, H, T]: phi_q_i . d_q_i
};

// Warpgroup 0 of the d_q kernel: every chunk's d_q rows.
template <bool kGated>
__device__ void DqLoop(unsigned char* sm, const Ptrs& s, const DqArgs& args, int64_t bh) {
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const float* z_all = reinterpret_cast<const float*>(sm + kZ);
  for (int c = 0; c < s.n_chunks; ++c) {
    NextChunk<false>(sm, s, c);
    const unsigned char* dout = sm + kQ + (c & 1) * kTile;
    const unsigned char* k = sm + kK + (c & 1) * kTile;
    const unsigned char* v = sm + kV + (c & 1) * kTile;
    const unsigned char* st = sm + kS + (c & 1) * kState;
    const float* z = z_all + (c & 1) * kF;
    const float* rows = reinterpret_cast<const float*>(sm + kDqRows) + (c & 1) * 2 * kC;
    if (s.row_z != nullptr) {  // dy -> d_num = dy / z, in place (16-byte pieces)
      unsigned char* tile = sm + kQ + (c & 1) * kTile;
      for (int i = tid; i < kC * kD / 8; i += 128) {
        const int row = i / (kD / 8), at = TileOffset(row, (i % (kD / 8)) * 8, kSlab);
        const float zr = rows[kC + row];
        const float r = zr != 0.f ? 1.f / zr : 0.f;  // 0: a row past the end
        uint4 x = *reinterpret_cast<const uint4*>(tile + at);
        uint32_t* e = reinterpret_cast<uint32_t*>(&x);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = tiles::Unpack(e[j]);
          e[j] = tiles::Pack(f.x * r, f.y * r);
        }
        *reinterpret_cast<uint4*>(tile + at) = x;
      }
      wg::FenceProxyAsync();
      asm volatile("bar.sync 3, 128;\n" ::: "memory");  // the outputs warpgroup alone
    }

    // A' = D V^T, then D S^T (both K-major over the value columns: V's
    // tile, and the state tile read as the K-major B [F][D]).
    float a[32], acc[64];
    wg::ZeroForProducts(a);
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int at = (kk / 4) * kSlab + (kk % 4) * 32;
      wg::MmaAsyncM64N64<0, 0>(a, wg::Descriptor(dout + at, 16, 1024),
                               wg::Descriptor(v + at, 16, 1024), 1);
    }
    wg::Commit();
    wg::ZeroForProducts(acc);
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      wg::MmaAsyncM64N128<0, 0>(
          acc, wg::Descriptor(dout + (kk / 4) * kSlab + (kk % 4) * 32, 16, 1024),
          wg::Descriptor(st + (kk / 4) * kStateSlab + (kk % 4) * 32, 16, 1024), 1);
    }
    wg::Commit();
    float dd[2];
#pragma unroll
    for (int h = 0; h < 2; ++h)
      dd[h] = __bfloat162float(__float2bfloat16_rn(rows[16 * warp + g + 8 * h]));
    wg::Wait<1>();
    wg::FenceOperands(a);
#pragma unroll
    for (int i = 0; i < 32; ++i) a[i] += dd[(i / 2) % 2];
    float q_dec[2] = {1.f, 1.f};
    if constexpr (kGated) {
      DecayScores(reinterpret_cast<const float*>(sm + kGates) + (c & 1) * kC, a, q_dec);
    }
    uint32_t af[4][4];
    MaskAndPack(a, af);
    wg::Wait<0>();
    wg::FenceOperands(acc);
#pragma unroll
    for (int j = 0; j < kF / 8; ++j) {
      const float2 zf = *reinterpret_cast<const float2*>(z + 8 * j + 2 * t);
      const float2 zj = tiles::Unpack(tiles::Pack(zf.x, zf.y));
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float* x = acc + 4 * j + 2 * h;
        x[0] = q_dec[h] * fmaf(dd[h], zj.x, x[0]);
        x[1] = q_dec[h] * fmaf(dd[h], zj.y, x[1]);
      }
    }
    wg::FenceOperands(acc);
    wg::Fence();
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {  // + A' K (K: MN-major, its rows the keys)
      wg::MmaAsyncRegAM64N128<1>(acc, af[kk], wg::Descriptor(k + kk * 16 * 128, kSlab, 1024), 1);
    }
    wg::Commit();
    wg::Wait<0>();
    wg::FenceOperands(acc);

    const unsigned char* phi_q = sm + kW + (c & 1) * kTile;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 16 * warp + g + 8 * h;
      const int64_t pos = (s.c_begin + c) * kC + row;
      float dot = 0.f;
      if (pos < s.length) {
        const int64_t at = (bh * s.length + pos) * kF;
#pragma unroll
        for (int j = 0; j < kF / 8; ++j) {
          const float x0 = acc[4 * j + 2 * h], x1 = acc[4 * j + 2 * h + 1];
          tiles::StoreOut2(args.d_q, args.d_q_bf16, at + 8 * j + 2 * t, x0, x1);
          if (args.q_dot != nullptr) {
            const float2 f = tiles::Unpack(
                *reinterpret_cast<const uint32_t*>(phi_q + TileOffset(row, 8 * j + 2 * t, kSlab)));
            dot += f.x * x0 + f.y * x1;
          }
        }
      }
      if (args.q_dot != nullptr) {
        dot += __shfl_xor_sync(0xffffffffu, dot, 1);
        dot += __shfl_xor_sync(0xffffffffu, dot, 2);
        if (pos < s.length && t == 0) args.q_dot[bh * s.length + pos] = dot;
      }
    }
  }
}

template <bool kGated>
__global__ void __launch_bounds__(kThreads, 1)
    ChunkedLinearDqWgmmaKernel(const __grid_constant__ DqArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const ChunkedLinearParams& p = args.fwd;
  const int blk = blockIdx.x;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  Ptrs s = PtrsOf(p, false, kGated);
  s.row_den = args.d_den + bh * p.length;
  s.row_z = args.z != nullptr ? args.z + bh * p.length : nullptr;
  s.phi_q = args.q_dot != nullptr ? args.phi_q + bh * p.length * kF : nullptr;
  IssueChunk(sm, s, 0, true, true, false);
  const bool entry = EntryStateToScratch(sm, p, bh, blk);
  BarrierAll();
  if (threadIdx.x < 128) {
    DqLoop<kGated>(sm, s, args, bh);
  } else {
    StateLoop<false, false, kGated>(sm, s, p, bh, blk, entry);
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

}  // namespace

bool ChunkedLinearDqWgmmaSupported(const ChunkedLinearBwdParams& p) {
  const bool normalised = p.d_num == nullptr;
  return p.feature_dim == kF && p.head_dim == kD &&
         (normalised ? p.dy != nullptr && p.z != nullptr : p.d_num_bf16) && p.d_den != nullptr &&
         p.phi_q != nullptr && p.phi_k != nullptr && p.v != nullptr && p.d_q != nullptr &&
         (p.blocks == 1 || p.fwd_block_states != nullptr) && p.key_delay >= 0 &&
         (p.log_gamma == nullptr ||
          (p.key_delay == 0 && p.g_heads >= 1 && p.heads % p.g_heads == 0)) &&
         p.batch >= 1 && p.batch <= 65535 && p.heads >= 1 && p.heads <= 65535 && p.k_heads >= 1 &&
         p.v_heads >= 1 && p.heads % p.k_heads == 0 && p.heads % p.v_heads == 0 && p.length >= 1;
}

const char* LaunchChunkedLinearDqWgmma(const ChunkedLinearBwdParams& p) {
  if (!ChunkedLinearDqWgmmaSupported(p)) return "ChunkedLinearDqWgmma: unsupported parameters";
  if (p.blocks < 1 || p.block_chunks < 1 || p.blocks * p.block_chunks < (p.length + kC - 1) / kC) {
    return "ChunkedLinearDqWgmma: call PlanChunkedLinearBwd before launching";
  }
  const bool normalised = p.d_num == nullptr;
  DqArgs args;
  ChunkedLinearParams& f = args.fwd;
  f.phi_q = normalised ? p.dy : p.d_num;
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
  f.workspace = const_cast<float*>(p.fwd_block_states);
  f.blocks = p.blocks;
  f.block_chunks = p.block_chunks;
  f.stream = p.stream;
  args.d_den = p.d_den;
  args.z = normalised ? p.z : nullptr;
  args.phi_q = static_cast<const bf16*>(p.phi_q);
  args.d_q = p.d_q;
  args.d_q_bf16 = p.d_q_bf16;
  args.q_dot = p.q_dot_dq;
  auto* kernel =
      p.log_gamma != nullptr ? ChunkedLinearDqWgmmaKernel<true> : ChunkedLinearDqWgmmaKernel<false>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kDqBytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const dim3 grid(static_cast<unsigned>(p.blocks), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  kernel<<<grid, kThreads, kDqBytes, static_cast<cudaStream_t>(p.stream)>>>(args);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

bool ChunkedLinearWgmmaSupported(const ChunkedLinearParams& p) {
  const bool maps =
      p.q_weight_t == nullptr ||  // fused: Fh = 64, as F = 2 Fh = 128
      (p.k_weight_t != nullptr && (p.k_weight_heads == p.heads || p.k_weight_heads == p.k_heads));
  return p.type == ElementType::kBF16 && p.feature_dim == kF && p.head_dim == kD && maps &&
         p.key_delay >= 0 &&
         (p.log_gamma == nullptr || (p.key_delay == 0 && p.window_gate == nullptr &&
                                     p.g_heads >= 1 && p.heads % p.g_heads == 0)) &&
         (p.window_gate == nullptr || (p.q_weight_t != nullptr && p.key_delay == kC)) &&
         (p.y != nullptr || p.num != nullptr || p.den != nullptr) &&
         (p.window_gate == nullptr || (p.num == nullptr && p.den == nullptr)) &&
         (p.kv == nullptr) == (p.k_sum == nullptr) && p.batch >= 1 && p.batch <= 65535 &&
         p.heads >= 1 && p.heads <= 65535 && p.k_heads >= 1 && p.v_heads >= 1 &&
         p.heads % p.k_heads == 0 && p.heads % p.v_heads == 0 && p.length >= 1;
}

const char* LaunchChunkedLinearWgmma(const ChunkedLinearParams& p) {
  if (!ChunkedLinearWgmmaSupported(p)) return "ChunkedLinearWgmma: unsupported parameters";
  if (p.blocks < 1 || p.block_chunks < 1 || p.blocks * p.block_chunks < (p.length + kC - 1) / kC) {
    return "ChunkedLinearWgmma: call PlanChunkedLinear before launching";
  }
  if (p.blocks > 1 && p.workspace == nullptr) return "ChunkedLinearWgmma: workspace missing";
  cudaError_t err = LaunchStates(p);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const bool fuse = p.q_weight_t != nullptr, gated = p.log_gamma != nullptr;
  auto* kernel = p.window_gate != nullptr ? ChunkedLinearWgmmaKernel<true, true, false>
                 : gated                  ? (fuse ? ChunkedLinearWgmmaKernel<true, false, true>
                                                  : ChunkedLinearWgmmaKernel<false, false, true>)
                 : fuse                   ? ChunkedLinearWgmmaKernel<true, false, false>
                                          : ChunkedLinearWgmmaKernel<false, false, false>;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const dim3 grid(static_cast<unsigned>(p.blocks), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  kernel<<<grid, kThreads, kBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace linearize::kernels
