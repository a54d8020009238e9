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
// barrier. LoLCATs' training forward (window fused too) also writes the
// features (phi_q from the A fragments, phi_k from its tile), the linear
// terms before the window adds in, and y's denominator: what its backward
// reads (kernels/lolcats/lolcats_train.cc).
//
// chunk_pipeline.cuh holds the layout, the loads and the state warpgroup,
// which the backward's kernels (chunked_linear_dq_wgmma_cuda.cu,
// chunked_linear_dkv_wgmma_cuda.cu) share.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/linear_attention/sm90a/chunk_pipeline.cuh"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"
#include "kernels/linear_attention/window_mask.cuh"

namespace linearize::kernels {
namespace {

// The window's gate g, kept off zero. (A gate below 1e-20, a logit below
// -46, would leave the window nothing anyway.)
__device__ __forceinline__ float WindowGate(const Ptrs& s) { return fmaxf(s.gate, 1e-20f); }

// LoLCATs' window (fused maps, key delay 64), by the outputs warpgroup in
// three steps, the first two overlapping the linear terms' products
// (session 30: 855 -> 808 us at 32k): the band is this chunk's delayed raw
// keys (the previous chunk's, in this buffer) and the next buffer's (this
// chunk's, which this warpgroup loaded and now waits for on its own). Row i
// sees the previous chunk's key j for j > i (and position >= 0), this
// chunk's for j <= i; scores q k * scale, the row's exact max c, weights
// exp(s - c) added into num through both value tiles and their sums into
// den_w times g.
//
// 1. The scores sp (previous keys) and sc (this chunk's), issued and
//    committed as one group, not waited for.
__device__ void IssueWindowScores(unsigned char* sm, int c, float (&sp)[32], float (&sc)[32]) {
  tiles::CpAsyncWaitGroup<1>();  // this warpgroup's copies of the next keys (NextChunk)
  wg::FenceProxyAsync();
  BarrierOutputs();
  const unsigned char* q = sm + kQ + (c & 1) * kTile;
  const unsigned char* k_prev = sm + kK + (c & 1) * kTile;
  const unsigned char* k_cur = sm + kK + ((c + 1) & 1) * kTile;
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
}

// 2. Once the scores' group is complete: the masked weights as bf16 A
//    fragments (fp, fc: 16 keys a k step) and den_w, the gate times their
//    sums.
__device__ void WindowWeights(const Ptrs& s, int c, float (&sp)[32], float (&sc)[32],
                              uint32_t (&fp)[4][4], uint32_t (&fc)[4][4], float (&den_w)[2]) {
  const float gate = WindowGate(s);
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
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
    // Weights exp(s scale - c), the gate applied to their sums: the row
    // max's weight is then exactly 1, also in bf16, where bf16(g) would be
    // off by up to 2^-9, enough to break y Z = g sum a v + lin_num, which the
    // backward's closed form for dc assumes (session 25: d q under GQA).
    const float b = window::Exp2Offset(mx * s.scale);
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
    den_w[h] = gate * sum;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      fp[kk][r] = tiles::Pack(sp[8 * kk + 2 * r], sp[8 * kk + 2 * r + 1]);
      fc[kk][r] = tiles::Pack(sc[8 * kk + 2 * r], sc[8 * kk + 2 * r + 1]);
    }
  }
}

// 3. num (the linear terms, complete) = num / g + sum a v: g times the
//    hybrid's numerator, which y's scale makes up for (OutputsLoop).
__device__ void WindowIntoNum(const unsigned char* sm, const Ptrs& s, int c,
                              const uint32_t (&fp)[4][4], const uint32_t (&fc)[4][4],
                              float (&num)[64]) {
  tiles::CpAsyncWaitAll();  // and of the next values
  wg::FenceProxyAsync();
  BarrierOutputs();
  const float inv_gate = 1.f / WindowGate(s);
  const unsigned char* v_prev = sm + kV + (c & 1) * kTile;
  const unsigned char* v_cur = sm + kV + ((c + 1) & 1) * kTile;
#pragma unroll
  for (int i = 0; i < 64; ++i) num[i] *= inv_gate;
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

// phi_q's bf16 A fragments (OutputsLoop's pq) of a chunk whose first row
// is at `start` into s.phi_q_out: register i of k step kk holds columns
// 8 (2 kk + i / 2) + 2 t (+ 1) of row g + 8 (i % 2), the n half 64 after.
__device__ __forceinline__ void StoreQueryPhi(const uint32_t (&pq)[8][4], const Ptrs& s,
                                              int64_t start) {
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t pos = start + 16 * warp + g + 8 * h;
    if (pos >= s.length) continue;
    uint32_t* row = reinterpret_cast<uint32_t*>(s.phi_q_out + pos * kF);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int col = 8 * (2 * kk + half) + 2 * t;
        row[col / 2] = pq[kk][2 * half + h];
        row[(64 + col) / 2] = pq[4 + kk][2 * half + h];
      }
    }
  }
}

// num = Q S (S: MN-major, its rows the features), not committed: Q from
// phi_q's A fragments pq (fused maps) or the K-major tile q.
template <bool kFuse>
__device__ __forceinline__ void IssueQueryState(float (&num)[64],
                                                const uint32_t (&pq)[kFuse ? 8 : 1][4],
                                                const unsigned char* q, const unsigned char* st) {
  wg::ZeroForProducts(num);
#pragma unroll
  for (int kk = 0; kk < kF / 16; ++kk) {
    const uint64_t ds = wg::Descriptor(st + kk * 16 * 128, kStateSlab, 1024);
    if constexpr (kFuse) {
      wg::MmaAsyncRegAM64N128<1>(num, pq[kk], ds, 1);
    } else {
      wg::MmaAsyncM64N128<0, 1>(num, wg::Descriptor(q + (kk / 4) * kSlab + (kk % 4) * 32, 16, 1024),
                                ds, 1);
    }
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
          // (Q . z from the float phi_q: from the bf16 one it cost 40 us and
          // changed no error, sessions 25-26.)
          qz[h] += p0 * z[col] + p1 * z[col + 1] + n0 * z[64 + col] + n1 * z[64 + col + 1];
        }
      }
      if constexpr (!kGated) {  // (the training outputs are ungated)
        if (s.phi_q_out != nullptr) StoreQueryPhi(pq, s, (s.c_begin + c) * kC);
      }
      BarrierAll();  // the state warpgroup's phi_k tile is written
    }
    if constexpr (kFuse) {
      wg::ZeroForProducts(a);
#pragma unroll
      for (int kk = 0; kk < kF / 16; ++kk) {
        const int at = (kk / 4) * kSlab + (kk % 4) * 32;
        wg::MmaAsyncRegAM64N64<0>(a, pq[kk], wg::Descriptor(sm + kPhiK + at, 16, 1024), 1);
      }
    } else {
      IssueScores(a, q, k);
    }
    wg::Commit();
    // Gated, maps outside: Q S in a group of its own behind A's, and the
    // gates' weights (a scan and shuffles) while both run (757 -> 697 us at
    // 32k, session 34). With the maps inside (255 registers) it measured
    // slower (927 -> 980 us): there they follow A's wait, as Q S does.
    constexpr bool kOverlapGates = kGated && !kFuse;
    const float* lg = reinterpret_cast<const float*>(sm + kGates) + (c & 1) * kC;
    float num[64];
    float q_dec[2] = {1.f, 1.f};  // exp(b_i) of the thread's rows
    float decays[kOverlapGates ? 32 : 1];
    if constexpr (kOverlapGates) {
      IssueQueryState<kFuse>(num, pq, q, st);
      wg::Commit();
      ScoreDecays(lg, decays, q_dec);
    }
    // The window's scores, a group of their own behind A's: they run while
    // A is masked and num's products are issued.
    float sp[kWindow ? 32 : 1], sc[kWindow ? 32 : 1];
    if constexpr (kWindow) IssueWindowScores(sm, c, sp, sc);
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
    wg::Wait<(kWindow || kOverlapGates) ? 1 : 0>();
    wg::FenceOperands(a);

    if constexpr (kGated) {
      if constexpr (kOverlapGates) {
        ApplyDecays(a, decays);
      } else {
        DecayScores(lg, a, q_dec);
      }
      qz[0] *= q_dec[0];
      qz[1] *= q_dec[1];
    }
    uint32_t af[4][4];
    MaskAndPack(a, af);
    // The rows' sums of the same bf16 weights that A V takes (a ones column
    // on mma.sync, as that kernel's den): y = num / den stays a weighted
    // mean of the values. Summing the unrounded float32 A puts the gated
    // training gradients past their bound. rs[0] row g, rs[2] row g + 8.
    // Before A V is issued: no register of a wgmma's A may be read while
    // it runs.
    float rs[4] = {0.f, 0.f, 0.f, 0.f};
    constexpr uint32_t kOnes = 0x3f803f80u;  // bf16 pair (1, 1)
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) tiles::Mma(rs, af[kk], kOnes, kOnes);

    // num = Q S + A V (V: MN-major).
    if constexpr (!kOverlapGates) IssueQueryState<kFuse>(num, pq, q, st);
    if constexpr (kGated) {  // Q S's rows times exp(b_i) before A V adds in
      if constexpr (!kOverlapGates) wg::Commit();
      wg::Wait<0>();
      wg::FenceOperands(num);
      ScaleAccRows(num, q_dec);
      wg::FenceOperands(num);
      wg::Fence();
    }
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {
      wg::MmaAsyncRegAM64N128<1>(num, af[kk], wg::Descriptor(v + kk * 16 * 128, kSlab, 1024), 1);
    }
    wg::Commit();
    // The window's weights while num's products run (their group is the
    // one left pending).
    uint32_t fp[kWindow ? 4 : 1][4], fc[kWindow ? 4 : 1][4];
    float den_w[2];
    if constexpr (kWindow) {
      wg::Wait<1>();
      WindowWeights(s, c, sp, sc, fp, fc, den_w);
    }
    wg::Wait<0>();
    wg::FenceOperands(num);
    if constexpr (kWindow) {
      // Training: y from the bf16 linear terms that its backward reads, so
      // that y Z = window + lin_num, as the closed form of the window max's
      // gradient there assumes (lolcats_window_bwd_params.h).
      if (s.num != nullptr && s.num_bf16) {
#pragma unroll
        for (int i = 0; i < 64; ++i) num[i] = __bfloat162float(__float2bfloat16_rn(num[i]));
      }
    }
    float den[2];  // the linear terms' (the raw terms of the training forms)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t pos = (s.c_begin + c) * kC + 16 * warp + g + 8 * h;
      den[h] = qz[h] + rs[2 * h];
      if (pos < s.length && s.num != nullptr) {
#pragma unroll
        for (int j = 0; j < kD / 8; ++j) {
          tiles::StoreOut2(s.num, s.num_bf16, pos * kD + 8 * j + 2 * t, num[4 * j + 2 * h],
                           num[4 * j + 2 * h + 1]);
        }
      }
      if (pos < s.length && s.den != nullptr && t == 0) s.den[pos] = den[h];
    }
    if constexpr (kWindow) {
      WindowIntoNum(sm, s, c, fp, fc, num);
      den[0] += den_w[0];  // the window's part is >= g (the row's own key): no eps
      den[1] += den_w[1];
    } else {
      den[0] += eps;
      den[1] += eps;
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t pos = (s.c_begin + c) * kC + 16 * warp + g + 8 * h;
      if (pos < s.length && s.y != nullptr) {
        // (With the window num is the numerator over g: WindowIntoNum.)
        const float inv = (kWindow ? WindowGate(s) : 1.f) / den[h];
        bf16* out = s.y + pos * kD;
#pragma unroll
        for (int j = 0; j < kD / 8; ++j) {
          tiles::StoreOut2(out + 8 * j + 2 * t, num[4 * j + 2 * h] * inv,
                           num[4 * j + 2 * h + 1] * inv);
        }
      }
      if (pos < s.length && s.y_den != nullptr && t == 0) s.y_den[pos] = den[h];
    }
  }
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
  unsigned char* sm = Aligned1024<!(kFuse && kGated)>(smem_raw);
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
  unsigned char* sm = Aligned1024(smem_raw);
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
  ZeroState(st);
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

}  // namespace

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
         (p.window_gate != nullptr || p.y_den == nullptr) &&
         ((p.phi_q_out == nullptr && p.phi_k_out == nullptr) ||
          (p.q_weight_t != nullptr && p.log_gamma == nullptr)) &&
         (p.phi_k_out == nullptr || p.k_weight_heads == p.k_heads) &&
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
