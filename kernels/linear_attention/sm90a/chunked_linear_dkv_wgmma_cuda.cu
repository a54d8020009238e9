// The chunked linear attention backward's d_k and d_v on wgmma
// (chunked_linear_wgmma.h): the forward's pipeline (chunk_pipeline.cuh)
// walking each block's chunks from its last to its first, with the math of
// chunked_linear_bwd_params.h, in three warpgroups. The state warpgroup
// keeps the gradient state of the later queries,
//   dS = sum q~_i^T d_num_i (F x D) and u = sum q~_i d_den_i (F),
// q~_i = exp(B_i - B_end) q_i (the query scaled by its in-chunk decay, the
// state decayed by each chunk it passes), written as bf16 dS and float u
// into the other state buffer. The other two form each chunk's key rows j,
// one d_k and one d_v, with k_dec_j = exp(b_last - b_j) and
// w_ij = exp(b_i - b_j):
//   A'^T_ji = w_ij (v_j . d_num_i + d_den_i),  P^T_ji = w_ij (k_j . q_i)   (i >= j)
//   d_k_j = k_dec_j (v_j dS^T + u) + sum_i A'^T_ji q_i
//   d_v_j = k_dec_j k_j dS + sum_i P^T_ji d_num_i.
// d_num (or dy, turned into dy / z in place) and dS are bf16 operands;
// d_den and u (summed from float32 d_den) are added in float32, as the d_q
// kernel adds d_den and z (its header says why both must round alike).
// Blocks start from the reverse pass 1's states (at the end).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/sm90a/chunk_pipeline.cuh"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"

namespace linearize::kernels {
namespace {

// The mma.sync kernels' state rows: [d_num | d_den | 0 ...] columns (Cfg::DP).
constexpr int kRevCols = kD + 16;
// Three warpgroups: d_k rows, d_v rows, the gradient state.
constexpr int kDkvThreads = 384;

struct DkvArgs {
  // The forward's form (phi_q, phi_k, v, gates, sizes, key delay, the block
  // plan), no outputs.
  ChunkedLinearParams fwd;
  const bf16* dout;    // [B, H, T, D]: d_num, or dy when z is set
  const float* d_den;  // [B, H, T]
  const float* z;      // normalised: [B, H, T], else null
  void *d_k, *d_v;     // [B, H, T, F], [B, H, T, D]: float32 or bf16 (the flags)
  bool d_k_bf16, d_v_bf16;
  const bf16* d_v_add;  // optional [B, H, T, D], added into d_v
  float* k_dot;         // optional [B, H, T]: phi_k_j . d_k_j
  bool k_logits;        // d_k: the Hedgehog logits' gradient [B, H, T, F / 2]
  // Blocks > 1: the reverse pass 1's local states [B * H][blocks][F][kRevCols]
  // and their total decays [B * H][blocks] (ChunkedLinearRevStatesWgmmaKernel
  // writes them, slot 0 unused).
  float *rev_states, *rev_decays;
};

// Block blk of (b, h) = bh walked in reverse: its queries, d_num (or dy) as
// the second query-side tile, and the rows' d_den (and z) (both kernels
// below).
__device__ Ptrs RevPtrsOf(const DkvArgs& args, bool gated, int blk, int64_t bh) {
  Ptrs s = PtrsOf(args.fwd, false, gated, blk);
  s.reverse = true;
  s.q2 = args.dout + bh * args.fwd.length * kD;
  s.row_den = args.d_den + bh * args.fwd.length;
  s.row_z = args.z != nullptr ? args.z + bh * args.fwd.length : nullptr;
  return s;
}

// dy -> d_num in chunk it's d_num tile, by all the threads; every
// warpgroup reads it after the barrier.
__device__ void DyToDnum(unsigned char* sm, int it) {
  DyToDnumInPlace(sm + kW + (it & 1) * kTile,
                  reinterpret_cast<const float*>(sm + kRowScalars) + (it & 1) * 2 * kC + kC, 0,
                  kDkvThreads);
  wg::FenceProxyAsync();
  BarrierAll<kDkvThreads>();
}

// One chunk (its queries q, d_num tile dout, d_den rows) into the gradient
// state, by a warpgroup: dS in st, u (the thread's feature's) returned.
// Gated, the state first decays by the chunk and the queries, scaled to
// q~ = exp(b_i) q, go to the tile q_scaled; warp 0 scans the log gates lg
// into q_dec[64 + 1] and adds the chunk's total into *total_f / *total_c
// (thread 0's count, when given).
template <bool kGated>
__device__ float AddChunkToRevState(float (&st)[2][64], float u, const unsigned char* q,
                                    const unsigned char* dout, const float* d_den,
                                    const float* lg, float* q_dec, unsigned char* q_scaled,
                                    double* total_f = nullptr, int* total_c = nullptr) {
  float chunk_dec = 1.f;
  if constexpr (kGated) {
    if ((threadIdx.x & 127) < 32) {
      const gates::Prefix pre = gates::ScanGates(lg);
      gates::PublishQueryDecays(pre, q_dec, q_dec + kC);
      const double last_f = __shfl_sync(0xffffffffu, pre.f1, 31);
      const int last_c = __shfl_sync(0xffffffffu, pre.c1, 31);
      if (total_f != nullptr) {
        *total_f += last_f;
        *total_c += last_c;
      }
    }
    BarrierState();
    chunk_dec = q_dec[kC];
    ScaleTileRows(q, q_scaled, q_dec);
    wg::FenceProxyAsync();
    BarrierState();
    q = q_scaled;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int i = 0; i < 64; ++i) st[half][i] *= chunk_dec;
    }
  }
  return AddChunkToState<true>(st, q, dout, u, chunk_dec, d_den);
}

// Warpgroup 2: dS and u after each chunk into the other state buffer.
template <bool kGated>
__device__ void RevStateLoop(unsigned char* sm, const Ptrs& s, bool entry) {
  const int tid = threadIdx.x & 127;
  float* z_all = reinterpret_cast<float*>(sm + kZ);
  float st[2][64];
  StartState(sm, st, entry);
  for (int it = 0; it < s.n_chunks; ++it) {
    NextChunk<false, kDkvThreads, true>(sm, s, it);
    if (s.row_z != nullptr) DyToDnum(sm, it);
    const unsigned char* q = sm + kQ + (it & 1) * kTile;
    const unsigned char* dout = sm + kW + (it & 1) * kTile;
    const float* d_den = reinterpret_cast<const float*>(sm + kRowScalars) + (it & 1) * 2 * kC;
    // q~ into the (here unused) phi_k tile
    z_all[((it + 1) & 1) * kF + tid] = AddChunkToRevState<kGated>(
        st, z_all[(it & 1) * kF + tid], q, dout, d_den,
        reinterpret_cast<const float*>(sm + kGates) + (it & 1) * kC,
        reinterpret_cast<float*>(sm + kDecays), sm + kPhiK);
    StoreStateBf16(st, sm + kS + ((it + 1) & 1) * kState);
  }
}

// Where the thread's two key rows (h = 0: row g, 1: row g + 8 of its warp's
// 16) of a [T][128] gradient go: the undelayed source rows, if inside the
// sequence.
struct KeyRows {
  int row[2];
  int64_t at[2];  // element offsets of the rows' first columns
  bool inside[2];
  __device__ KeyRows(const Ptrs& s, int64_t start, int64_t bh) {
    const int tid = threadIdx.x & 127;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row[h] = 16 * (tid >> 5) + ((tid & 31) >> 2) + 8 * h;
      const int64_t pos = start + row[h], src = pos - s.key_delay;
      inside[h] = src >= 0 && pos < s.length;
      at[h] = (bh * s.length + src) * 128;
    }
  }
};

// The thread's values of `add` (bf16 pairs; zeros without it) at its key
// rows, loaded while the tensor cores work: StoreKeyRows adds them. Loaded
// there, after the stores began, each load's latency was exposed (the
// compiler keeps loads behind stores that may alias).
__device__ __forceinline__ void LoadAddRows(const bf16* add, const KeyRows& r,
                                            uint32_t (&added)[2][16]) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      added[h][j] =
          add != nullptr && r.inside[h]
              ? __ldg(reinterpret_cast<const unsigned int*>(add + r.at[h] + 8 * j + 2 * t))
              : 0u;
    }
  }
}

// The thread's two key rows of a gradient (acc: m64n128 accumulators) at
// r, plus `added` (LoadAddRows', kAdd), and each row's dot with the key
// tile's row into dot (optional).
template <bool kAdd>
__device__ __forceinline__ void StoreKeyRows(const float (&acc)[64], void* out, bool out_bf16,
                                             const uint32_t (&added)[2][16],
                                             const unsigned char* k_tile, float* dot,
                                             const KeyRows& r) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float partial = 0.f;
    if (r.inside[h]) {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int col = 8 * j + 2 * t;
        float x0 = acc[4 * j + 2 * h], x1 = acc[4 * j + 2 * h + 1];
        if constexpr (kAdd) {
          const float2 a = tiles::Unpack(added[h][j]);
          x0 += a.x;
          x1 += a.y;
        }
        tiles::StoreOut2(out, out_bf16, r.at[h] + col, x0, x1);
        if (dot != nullptr) {
          const float2 kv = TilePair(k_tile, r.row[h], col);
          partial = fmaf(kv.x, x0, fmaf(kv.y, x1, partial));
        }
      }
    }
    if (dot != nullptr) {
      partial += __shfl_xor_sync(0xffffffffu, partial, 1);
      partial += __shfl_xor_sync(0xffffffffu, partial, 2);
      if (r.inside[h] && t == 0) dot[r.at[h] / 128] = partial;  // row bh * length + src
    }
  }
}

// Warpgroup 0: every chunk's d_k rows.
template <bool kGated>
__device__ void DkLoop(unsigned char* sm, const Ptrs& s, const DkvArgs& args, int64_t bh) {
  const int t = threadIdx.x & 3;
  const float* z_all = reinterpret_cast<const float*>(sm + kZ);
  for (int it = 0; it < s.n_chunks; ++it) {
    NextChunk<false, kDkvThreads, true>(sm, s, it);
    if (s.row_z != nullptr) DyToDnum(sm, it);
    const unsigned char* q = sm + kQ + (it & 1) * kTile;
    const unsigned char* k = sm + kK + (it & 1) * kTile;
    const unsigned char* v = sm + kV + (it & 1) * kTile;
    const unsigned char* dout = sm + kW + (it & 1) * kTile;
    const unsigned char* st = sm + kS + (it & 1) * kState;
    const float* u = z_all + (it & 1) * kF;
    const float* d_den = reinterpret_cast<const float*>(sm + kRowScalars) + (it & 1) * 2 * kC;
    const float* lg = reinterpret_cast<const float*>(sm + kGates) + (it & 1) * kC;
    const int64_t start = ChunkStart(s, it);

    // d_k: A'^T = V d_num^T (+ d_den_i) and V dS^T, both K-major over the
    // value columns (dS^T: the state tile read as the K-major B [F][D]).
    // d_den and u are added in float32: in normalised attention the sums
    // nearly cancel them (d_num_i . v_j + d_den_i = dy_i . (v_j - y_i) / z_i,
    // and v_j dS^T + u alike across chunks), so their bf16 rounding would
    // stay in the result in full (dS's, a bf16 operand, still does).
    float a[32], acc[64];
    IssueScoresAndStateT(a, acc, v, dout, st);
    wg::Wait<1>();
    wg::FenceOperands(a);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 dd = *reinterpret_cast<const float2*>(d_den + 8 * j + 2 * t);
      a[4 * j] += dd.x;
      a[4 * j + 1] += dd.y;
      a[4 * j + 2] += dd.x;
      a[4 * j + 3] += dd.y;
    }
    float k_dec[2] = {1.f, 1.f};
    if constexpr (kGated) DecayScores<true>(lg, a, k_dec);
    uint32_t af[4][4];
    MaskAndPack<true>(a, af);
    wg::Wait<0>();
    wg::FenceOperands(acc);
#pragma unroll
    for (int j = 0; j < kF / 8; ++j) {
      const float2 uf = *reinterpret_cast<const float2*>(u + 8 * j + 2 * t);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        acc[4 * j + 2 * h] = k_dec[h] * (acc[4 * j + 2 * h] + uf.x);
        acc[4 * j + 2 * h + 1] = k_dec[h] * (acc[4 * j + 2 * h + 1] + uf.y);
      }
    }
    wg::FenceOperands(acc);
    wg::Fence();
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {  // + A'^T Q (Q: MN-major, its rows the queries)
      wg::MmaAsyncRegAM64N128<1>(acc, af[kk], wg::Descriptor(q + kk * 16 * 128, kSlab, 1024), 1);
    }
    wg::Commit();
    wg::Wait<0>();
    wg::FenceOperands(acc);
    const KeyRows rows(s, start, bh);
    if (args.k_logits) {
      const int64_t at[2] = {rows.at[0] / 2, rows.at[1] / 2};  // F / 2 columns a row
      StoreHedgehogLogits(acc, k, args.d_k, args.d_k_bf16, rows.row, at, rows.inside, args.k_dot);
    } else {
      StoreKeyRows<false>(acc, args.d_k, args.d_k_bf16, {}, k, args.k_dot, rows);
    }
  }
}

// Warpgroup 1: every chunk's d_v rows. (The loops set up their chunk's
// pointers each: one struct for them measured 3-5% slower, session 20.)
template <bool kGated>
__device__ void DvLoop(unsigned char* sm, const Ptrs& s, const DkvArgs& args, int64_t bh) {
  for (int it = 0; it < s.n_chunks; ++it) {
    NextChunk<false, kDkvThreads, true>(sm, s, it);
    if (s.row_z != nullptr) DyToDnum(sm, it);
    const unsigned char* q = sm + kQ + (it & 1) * kTile;
    const unsigned char* k = sm + kK + (it & 1) * kTile;
    const unsigned char* dout = sm + kW + (it & 1) * kTile;
    const unsigned char* st = sm + kS + (it & 1) * kState;
    const float* lg = reinterpret_cast<const float*>(sm + kGates) + (it & 1) * kC;
    float a[32], acc[64];
    float k_dec[2] = {1.f, 1.f};
    uint32_t af[4][4];

    // d_v: P^T = K Q^T and K dS (dS: MN-major, its rows the features).
    IssueScores(a, k, q);
    wg::Commit();
    wg::ZeroForProducts(acc);
#pragma unroll
    for (int kk = 0; kk < kF / 16; ++kk) {
      wg::MmaAsyncM64N128<0, 1>(acc, wg::Descriptor(k + (kk / 4) * kSlab + (kk % 4) * 32, 16, 1024),
                                wg::Descriptor(st + kk * 16 * 128, kStateSlab, 1024), 1);
    }
    wg::Commit();
    const KeyRows rows(s, ChunkStart(s, it), bh);
    // The added rows load while the tensor cores work: here, or (gated)
    // behind P^T d_num, so that they are not live through the gates' scan.
    uint32_t added[2][16];
    if constexpr (!kGated) LoadAddRows(args.d_v_add, rows, added);
    wg::Wait<1>();
    wg::FenceOperands(a);
    if constexpr (kGated) DecayScores<true>(lg, a, k_dec);
    MaskAndPack<true>(a, af);
    wg::Wait<0>();
    wg::FenceOperands(acc);
    ScaleAccRows(acc, k_dec);
    wg::FenceOperands(acc);
    wg::Fence();
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {  // + P^T d_num (MN-major, its rows the queries)
      wg::MmaAsyncRegAM64N128<1>(acc, af[kk], wg::Descriptor(dout + kk * 16 * 128, kSlab, 1024), 1);
    }
    wg::Commit();
    if constexpr (kGated) LoadAddRows(args.d_v_add, rows, added);
    wg::Wait<0>();
    wg::FenceOperands(acc);
    StoreKeyRows<true>(acc, args.d_v, args.d_v_bf16, added, k, nullptr, rows);
  }
}

// Three warpgroups of 168 registers each (__launch_bounds__'s share of the
// register file). Moving registers to the state warpgroup (setmaxnreg,
// 160 / 160 / 184) measured slower: 918 against 883 us in LoLCATs' step.
template <bool kGated>
__global__ void __launch_bounds__(kDkvThreads, 1)
    ChunkedLinearDkvWgmmaKernel(const __grid_constant__ DkvArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm = Aligned1024<kGated>(smem_raw);
  const ChunkedLinearParams& p = args.fwd;
  const int blk = blockIdx.x;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  const Ptrs s = RevPtrsOf(args, kGated, blk, bh);
  IssueChunk<true>(sm, s, 0, true, true, false, 0, kDkvThreads);
  // The entry state: the later blocks' local states, the last one first.
  const bool entry = blk < p.blocks - 1;
  if (entry) {
    FoldStatesToScratch(sm, nullptr, args.rev_states + bh * p.blocks * kF * kRevCols,
                        args.rev_decays + bh * p.blocks, kRevCols, int(p.blocks) - 1,
                        int(p.blocks) - 1 - blk, -1, kDkvThreads);
  } else {
    for (int f = threadIdx.x; f < kF; f += kDkvThreads) reinterpret_cast<float*>(sm + kZ)[f] = 0.f;
  }
  BarrierAll<kDkvThreads>();
  if (threadIdx.x < 128) {
    DkLoop<kGated>(sm, s, args, bh);
  } else if (threadIdx.x < 256) {
    DvLoop<kGated>(sm, s, args, bh);
  } else {
    RevStateLoop<kGated>(sm, s, entry);
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

// ---- reverse pass 1 -------------------------------------------------------------
// The gradient state (dS, u) of every block but the first, its chunks in
// reverse, and the block's total decay, into the workspace as the kernel
// above reads them ([F][kRevCols] rows: dS in the columns < D, u in column
// D), by one warpgroup: AddChunkToRevState alone, the tiles
// double-buffered, so that two CTAs share an SM (the mma.sync pass 1 took
// 254 us of LoLCATs' 32k step). Shared memory from a 1024-aligned base:
// the Q and d_num tiles of two buffers, the q~ tile, the rows' d_den and z
// [2][2][64], the log gates [2][64], the query decays [64 + 1].
constexpr int kRevThreads = 128;
constexpr int kRQ = 0, kRW = 2 * kTile, kRScaled = 4 * kTile, kRRows = 5 * kTile;
constexpr int kRGates = kRRows + 2 * 2 * kC * 4, kRDecays = kRGates + 2 * kC * 4;
constexpr int kRevBytes = kRDecays + (kC + 4) * 4 + 1024;
static_assert(2 * kRevBytes <= 227 * 1024, "two reverse pass-1 CTAs an SM");

template <bool kGated>
__global__ void __launch_bounds__(kRevThreads, 2)
    ChunkedLinearRevStatesWgmmaKernel(const __grid_constant__ DkvArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm = Aligned1024(smem_raw);
  const ChunkedLinearParams& p = args.fwd;
  const int blk = blockIdx.x + 1;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  const Ptrs s = RevPtrsOf(args, kGated, blk, bh);
  const auto issue = [&](int i) {
    const int buf = i & 1;
    const int64_t start = ChunkStart(s, i);
    IssueTile(sm + kRQ + buf * kTile, s.q, start, s.length, 0, kRevThreads);
    IssueTile(sm + kRW + buf * kTile, s.q2, start, s.length, 0, kRevThreads);
    IssueRowScalars(reinterpret_cast<float*>(sm + kRRows) + buf * 2 * kC, s, i, 0);
    IssueGates(reinterpret_cast<float*>(sm + kRGates) + buf * kC, s, i, 0);
    tiles::CpAsyncCommit();
  };
  issue(0);
  float st[2][64];
  ZeroState(st);
  float u = 0.f;       // feature threadIdx.x's
  double total_f = 0;  // the block's log decay (thread 0's), and its -inf gates
  int total_c = 0;
  for (int it = 0; it < s.n_chunks; ++it) {
    tiles::CpAsyncWaitAll();
    wg::FenceProxyAsync();  // the copies, before the tensor cores read them
    __syncthreads();        // everyone's; the other buffer's last reads are done
    if (it + 1 < s.n_chunks) issue(it + 1);
    unsigned char* dout = sm + kRW + (it & 1) * kTile;
    const float* rows = reinterpret_cast<const float*>(sm + kRRows) + (it & 1) * 2 * kC;
    if (s.row_z != nullptr) {  // the normalised form: dy -> d_num = dy / z in place
      DyToDnumInPlace(dout, rows + kC, 0, kRevThreads);
      wg::FenceProxyAsync();
      __syncthreads();
    }
    u = AddChunkToRevState<kGated>(st, u, sm + kRQ + (it & 1) * kTile, dout, rows,
                                   reinterpret_cast<const float*>(sm + kRGates) + (it & 1) * kC,
                                   reinterpret_cast<float*>(sm + kRDecays), sm + kRScaled,
                                   &total_f, &total_c);
  }
  const int64_t slot = bh * p.blocks + blk;
  float* out = args.rev_states + slot * kF * kRevCols;
  ForStatePairs(st, [&](int f, int col, float x0, float x1) {
    tiles::StoreOut2(out + f * kRevCols + col, x0, x1);
  });
  out[threadIdx.x * kRevCols + kD] = u;
  if (threadIdx.x == 0) {
    args.rev_decays[slot] = total_c > 0 ? 0.f : float(exp(total_f));
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

}  // namespace

bool ChunkedLinearDkvWgmmaSupported(const ChunkedLinearBwdParams& p) {
  return BackwardCovered(p) && p.d_k != nullptr && p.d_v != nullptr &&
         (p.blocks == 1 || p.workspace != nullptr);
}

const char* LaunchChunkedLinearDkvWgmma(const ChunkedLinearBwdParams& p) {
  if (!ChunkedLinearDkvWgmmaSupported(p)) {
    return "ChunkedLinearDkvWgmma: not covered (ChunkedLinearDkvWgmmaSupported)";
  }
  const bool normalised = p.d_num == nullptr;
  DkvArgs args{};
  args.fwd = ForwardFormOf(p, p.phi_q);
  args.dout = static_cast<const bf16*>(normalised ? p.dy : p.d_num);
  args.d_den = p.d_den;
  args.z = normalised ? p.z : nullptr;
  args.d_k = p.d_k;
  args.d_v = p.d_v;
  args.d_k_bf16 = p.d_k_bf16;
  args.d_v_bf16 = p.d_v_bf16;
  args.d_v_add = static_cast<const bf16*>(p.d_v_add);
  args.k_dot = p.k_dot_dk;
  args.k_logits = p.hedgehog_logits;
  if (p.blocks > 1) {  // BackwardCovered: the reverse states start the workspace
    args.rev_states = static_cast<float*>(p.workspace);
    args.rev_decays = args.rev_states + p.batch * p.heads * p.blocks * kF * kRevCols;
  }
  const bool gated = p.log_gamma != nullptr;
  if (p.blocks > 1) {
    const char* err = LaunchBackward(gated ? ChunkedLinearRevStatesWgmmaKernel<true>
                                           : ChunkedLinearRevStatesWgmmaKernel<false>,
                                     args, p, kRevThreads, kRevBytes, 1);
    if (err != nullptr) return err;
  }
  return LaunchBackward(
      gated ? ChunkedLinearDkvWgmmaKernel<true> : ChunkedLinearDkvWgmmaKernel<false>, args, p,
      kDkvThreads, kBwdBytes);
}

}  // namespace linearize::kernels
