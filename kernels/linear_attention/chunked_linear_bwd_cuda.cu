// Backward of the chunked causal (optionally gated) linear attention on
// tensor cores, bfloat16 inputs, chunk C = 64 (chunked_linear_bwd_params.h
// has the math). Two kernels, each one CTA of 8 warps per sequence block
// (skip_dq / skip_dkv leave one out where a wgmma kernel takes its part):
//
//   DqKernel (chunks in order), with the forward's state S = sum k^T [v | 1]:
//     A'   = [d_num | d_den] [v | 1]^T masked, decayed      (64 x 64)
//     d_q  = exp(b_i) [d_num | d_den] S^T + A' K
//     S    = exp(b_last) S + (K exp(b_last - b_j))^T [v | 1]
//   DkvKernel (chunks in reverse), with dS = sum over later queries of
//   exp(B_i - B_chunk_end) q_i^T [d_num | d_den]:
//     P    = Q K^T masked, decayed;  A' as above
//     d_k  = exp(b_last - b_j) [v | 1] dS^T + A'^T Q
//     d_v  = exp(b_last - b_j) K dS[:, :D] + P^T d_num
//     dS   = exp(b_last) dS + (Q exp(b_i))^T [d_num | d_den]
//
// The denominator rides along as an extra column of v (ones) and of d_num
// (d_den), padded with zeros to D + 16 so that it is also a contraction
// dimension. States are float32 registers plus a bf16 copy in shared memory.
// Gate exponents come from the forward's prefix helpers (chunk_gates.cuh).
// Long sequences with few (b, h) use the forward's two-pass scheme in both
// directions: block-local states, then the blocks, each folding the local
// states before it (after it, in reverse) into its entry state.
// Every kernel loads the next chunk (cp.async, d_num or dy raw into a
// staging area) while it computes the current one from the other buffer.
// Options on top (chunked_linear_bwd_params.h): keys delayed by key_delay
// (d_k, d_v stored back at the undelayed rows); the normalised form, where
// NormalizedDenGradKernel first forms d_den and the loads form d_num = dy / z;
// bf16 gradient outputs; and per-row q . d_q, k . d_k for the gates.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/linear_attention/chunk_gates.cuh"
#include "kernels/linear_attention/chunk_plan.h"
#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/chunked_linear_params.h"  // the forward's state rows
#include "kernels/linear_attention/occupancy.cuh"
#include "kernels/linear_attention/tile_mma.cuh"

namespace linearize::kernels {
namespace {

using tiles::bf16;

constexpr int kC = 64;
constexpr int kThreads = 256;

// The kernels' shared-memory layouts: kPass 0 for DqKernel and DkvKernel;
// pass 1's BlockStatesKernel keeps only what it reads, kPass 1 (forward: K
// and [v | 1]) or 2 (reverse: Q and [d_num | d_den]), so two of its CTAs
// share an SM. Parts a layout lacks are empty and alias the next part.
enum Pass : int { kMain = 0, kStatesFwd = 1, kStatesRev = 2 };

template <int FF, int DD, int kPass = kMain>
struct Cfg {
  static constexpr int F = FF, D = DD;
  static constexpr int DP = D + 16;  // [v | 1 | 0 ...] and [d_num | d_den | 0 ...]
  static constexpr int SQ = tiles::Stride(F);
  static constexpr int SP = tiles::Stride(DP);
  static constexpr int SA = tiles::Stride(kC);
  static constexpr int kQ = kC * SQ, kV = kC * SP, kS = F * SP, kA = kC * SA;
  // Two buffers of Q, K, [v | 1] (the next chunk lands in one while the
  // current computes from the other), then [d_num | d_den], the state copy,
  // P, A' (bf16); then the next chunk's raw d_num (float32) or dy (bf16), its
  // d_den and z, two buffers of gates, the decays (float32).
  static constexpr int kBufQ = kPass == kStatesFwd ? 0 : kQ;
  static constexpr int kBufK = kPass == kStatesRev ? 0 : kQ;
  static constexpr int kBufV = kPass == kStatesRev ? 0 : kV;
  static constexpr int kBuf = kBufQ + kBufK + kBufV;
  static constexpr int kDout = kPass == kStatesFwd ? 0 : kV;
  static constexpr int kStateTile = kPass == kMain ? kS : 0;
  static constexpr int kScoreTile = kPass == kMain ? kA : 0;  // P and A' each
  static constexpr int kElems = 2 * kBuf + kDout + kStateTile + 2 * kScoreTile;
  static constexpr int kStaging = kPass == kStatesFwd ? 0 : kC * D;
  static constexpr int kBytes = kElems * 2 + (kStaging + 6 * kC + 4) * 4;
  // State [F][DP]: F/16 row tiles over 8 warps; F = 64 also splits the columns.
  static constexpr int kMT = F / 16;
  static constexpr int kStateSplit = 8 / kMT;
  static constexpr int NTS = DP / 8 / kStateSplit;
  static constexpr int NQ = F / 16;  // d_q / d_k n-tiles per warp (half the columns)
  static constexpr int NV = D / 16;  // d_v n-tiles per warp
  static constexpr int kStateElems = F * DP;
  static_assert(kMT * kStateSplit == 8, "F must be 64 or 128");
  static_assert((DP / 8) % kStateSplit == 0, "state columns split evenly");
  static_assert(NQ % 2 == 0 && NV % 2 == 0, "pairs of n-tiles (MmaTiles)");
  static_assert(kBytes <= 227 * 1024, "shared memory");
};

template <class Cf>
struct Smem {
  // The current chunk's tiles (At() points them at one of the two buffers).
  bf16 *q, *k, *v;
  float* gates;
  bf16 *dout, *state, *p, *a;
  float *staging, *stage_den, *stage_z;
  float *q_dec, *k_dec, *chunk_dec;
  unsigned char* raw;
  __device__ explicit Smem(unsigned char* base) : raw(base) {
    bf16* after_bufs = reinterpret_cast<bf16*>(base) + 2 * Cf::kBuf;
    dout = after_bufs;
    state = dout + Cf::kDout;
    p = state + Cf::kStateTile;
    a = p + Cf::kScoreTile;
    staging = reinterpret_cast<float*>(base + Cf::kElems * 2);
    stage_den = staging + Cf::kStaging;
    stage_z = stage_den + kC;
    q_dec = stage_z + 3 * kC;  // after the two gate buffers
    k_dec = q_dec + kC;
    chunk_dec = k_dec + kC;
    Point(0);
  }
  __device__ void Point(int b) {
    q = reinterpret_cast<bf16*>(raw) + b * Cf::kBuf;
    k = q + Cf::kBufQ;
    v = k + Cf::kBufK;
    gates = stage_z + kC + b * kC;
  }
  __device__ Smem At(int b) const {
    Smem s = *this;
    s.Point(b);
    return s;
  }
};

// One (b, h)'s rows of a float32 or bf16 gradient output, and optionally a
// bf16 gradient of the same layout added into it (LoadAddRows, AddRows).
struct GradOut {
  void* base;
  bool bf16_out;
  int64_t offset;  // elements before the (b, h)'s first row
  const bf16* add = nullptr;
  __device__ void Store2(int64_t at, float x0, float x1) const {
    tiles::StoreOut2(base, bf16_out, offset + at, x0, x1);
  }
};

// Per-(b, h) global pointers.
template <class Cf>
struct Seq {
  const bf16 *q, *k, *v;
  const float *g, *dden;
  const void* dnum;  // float32, or bf16 with dnum_bf16
  bool dnum_bf16;
  const bf16* dy;  // the normalised form (dnum null): dy and z
  const float* z;
  GradOut dq, dk, dv;
  float *q_dot, *k_dot;  // gated: q . d_q and k . d_k per row, or null
  int64_t bh;
  int64_t delay;  // key row r of a chunk holds source row start + r - delay
  __device__ Seq(const ChunkedLinearBwdParams& p, int b, int h) {
    const int64_t t = p.length;
    bh = int64_t(b) * p.heads + h;
    const int64_t hk = h / (p.heads / p.k_heads), hv = h / (p.heads / p.v_heads);
    q = static_cast<const bf16*>(p.phi_q) + bh * t * Cf::F;
    k = static_cast<const bf16*>(p.phi_k) + (int64_t(b) * p.k_heads + hk) * t * Cf::F;
    v = static_cast<const bf16*>(p.v) + (int64_t(b) * p.v_heads + hv) * t * Cf::D;
    g = nullptr;
    if (p.log_gamma != nullptr) {
      g = p.log_gamma + (int64_t(b) * p.g_heads + h / (p.heads / p.g_heads)) * t;
    }
    const bool normalised = p.d_num == nullptr;
    dnum_bf16 = !normalised && p.d_num_bf16;
    dnum = normalised ? nullptr
                      : static_cast<const unsigned char*>(p.d_num) +
                            bh * t * Cf::D * (dnum_bf16 ? sizeof(bf16) : sizeof(float));
    dden = p.d_den + bh * t;
    dy = normalised ? static_cast<const bf16*>(p.dy) + bh * t * Cf::D : nullptr;
    z = normalised ? p.z + bh * t : nullptr;
    dq = GradOut{p.d_q, p.d_q_bf16, bh * t * Cf::F};
    dk = GradOut{p.d_k, p.d_k_bf16, bh * t * Cf::F};
    dv = GradOut{p.d_v, p.d_v_bf16, bh * t * Cf::D, static_cast<const bf16*>(p.d_v_add)};
    delay = p.key_delay;
    q_dot = p.q_dot_dq != nullptr ? p.q_dot_dq + bh * t : nullptr;
    k_dot = p.k_dot_dk != nullptr ? p.k_dot_dk + bh * t : nullptr;
  }
};

// The constant columns: [v | 1 | 0 ...] and [d_num | d_den | 0 ...].
template <class Cf>
__device__ void InitPads(const Smem<Cf>& sm) {
  constexpr int kPad = Cf::DP - Cf::D;
  for (int i = threadIdx.x; i < kC * kPad; i += kThreads) {
    const int row = i / kPad, col = Cf::D + i % kPad;
    const bf16 one_or_zero = __float2bfloat16_rn(col == Cf::D ? 1.f : 0.f);
    if constexpr (Cf::kBufV > 0) {
      sm.At(0).v[row * Cf::SP + col] = one_or_zero;
      sm.At(1).v[row * Cf::SP + col] = one_or_zero;
    }
    if (Cf::kDout > 0 && col > Cf::D) sm.dout[row * Cf::SP + col] = __float2bfloat16_rn(0.f);
  }
}

enum Load : unsigned { kLoadQ = 1, kLoadK = 2, kLoadV = 4, kLoadDout = 8 };

// Four bf16 values as floats (8-byte aligned).
__device__ __forceinline__ float4 Load4(const bf16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(a.x, a.y, b.x, b.y);
}

// Starts the loads of chunk `chunk`'s parts named in `what` (and its gates)
// into buffer `buf` and the staging area, all cp.async (one group): rows
// past the end (and keys before the start, when delayed) are zero, gates 0.
// LandChunk waits for them; a chunk's loads thus fly while the previous
// chunk computes.
template <class Cf>
__device__ void IssueChunk(const Smem<Cf>& sm_any, int buf, const Seq<Cf>& s, int64_t chunk,
                           int64_t length, unsigned what) {
  const Smem<Cf> sm = sm_any.At(buf);
  const int64_t start = chunk * kC;
  if (what & kLoadQ) tiles::LoadTile<bf16, kC, Cf::F, kThreads>(sm.q, Cf::SQ, 0, s.q, start, length);
  // Delayed keys: zero unless 0 <= source and position < length, as in the forward.
  const int64_t k_start = start - s.delay, k_limit = length - s.delay;
  if (what & kLoadK) {
    tiles::LoadTile<bf16, kC, Cf::F, kThreads>(sm.k, Cf::SQ, 0, s.k, k_start, k_limit);
  }
  if (what & kLoadV) {
    tiles::LoadTile<bf16, kC, Cf::D, kThreads>(sm.v, Cf::SP, 0, s.v, k_start, k_limit);
  }
  if (what & kLoadDout) {
    // d_num rows as float32 or bf16, or dy rows as bf16 (the normalised form), raw.
    constexpr int kPerRow = Cf::D * 4 / 16;  // 16-byte pieces of the widest (float32) row
    const bool f32 = s.dy == nullptr && !s.dnum_bf16;
    const int row_bytes = f32 ? Cf::D * 4 : Cf::D * 2;
    const unsigned char* src = s.dy == nullptr ? static_cast<const unsigned char*>(s.dnum)
                                               : reinterpret_cast<const unsigned char*>(s.dy);
    unsigned char* dst = reinterpret_cast<unsigned char*>(sm.staging);
    for (int i = threadIdx.x; i < kC * kPerRow; i += kThreads) {
      const int row = i / kPerRow, off = (i % kPerRow) * 16;
      const int64_t pos = start + row;
      const bool valid = pos < length && off < row_bytes;
      if (off < row_bytes) {
        tiles::CpAsync16(dst + row * row_bytes + off, src + (valid ? pos : 0) * row_bytes + off,
                         valid);
      }
    }
    if (threadIdx.x < kC) {
      const int64_t pos = start + threadIdx.x;
      const bool valid = pos < length;
      tiles::CpAsync4(sm.stage_den + threadIdx.x, s.dden + (valid ? pos : 0), valid);
      if (s.dy != nullptr) {
        tiles::CpAsync4(sm.stage_z + threadIdx.x, s.z + (valid ? pos : 0), valid);
      }
    }
  }
  if (s.g != nullptr && threadIdx.x < kC) {
    const int64_t pos = start + threadIdx.x;
    tiles::CpAsync4(sm.gates + threadIdx.x, s.g + (pos < length ? pos : 0), pos < length);
  }
  tiles::CpAsyncCommit();
}

// Waits for the chunk issued into `sm`'s buffer (every thread, and every
// thread done with the previous chunk), then forms the bf16 [d_num | d_den]
// tile from the staging area: d_num as given (float32 or bf16), or dy / z.
template <class Cf>
__device__ void LandChunk(const Smem<Cf>& sm, const Seq<Cf>& s, unsigned what) {
  tiles::CpAsyncWaitAll();
  __syncthreads();
  if (what & kLoadDout) {
    constexpr int kPerRow = Cf::D / 4;
    const bool f32 = s.dy == nullptr && !s.dnum_bf16;
    for (int i = threadIdx.x; i < kC * kPerRow; i += kThreads) {
      const int row = i / kPerRow, col = (i % kPerRow) * 4;
      float4 x;
      if (f32) {
        x = *reinterpret_cast<const float4*>(sm.staging + row * Cf::D + col);
      } else {
        const float z = s.dy != nullptr ? sm.stage_z[row] : 1.f;
        const float inv_z = z != 0.f ? 1.f / z : 0.f;  // 0: a row past the end
        x = Load4(reinterpret_cast<const bf16*>(sm.staging) + row * Cf::D + col);
        x = make_float4(x.x * inv_z, x.y * inv_z, x.z * inv_z, x.w * inv_z);
      }
      *reinterpret_cast<uint2*>(sm.dout + row * Cf::SP + col) =
          make_uint2(tiles::Pack(x.x, x.y), tiles::Pack(x.z, x.w));
    }
    if (threadIdx.x < kC) {
      sm.dout[threadIdx.x * Cf::SP + Cf::D] = __float2bfloat16_rn(sm.stage_den[threadIdx.x]);
    }
    __syncthreads();
  }
}

// Every warp scans the chunk's gates (MaskAndDecay needs its own copy); warp
// 0 publishes the decays. Call after LandChunk, before a barrier.
__device__ __forceinline__ gates::Prefix ChunkGates(const float* gate_smem, float* q_dec,
                                                    float* k_dec, float* chunk_dec,
                                                    double* total_f, int* total_c) {
  const gates::Prefix pre = gates::ScanGates(gate_smem);
  if ((threadIdx.x >> 5) == 0) {
    double lf;
    int lc;
    gates::PublishDecays(pre, q_dec, k_dec, chunk_dec, lf, lc);
    *total_f += lf;
    *total_c += lc;
  }
  return pre;
}

// out = X Y^T over kK columns of the row-major tiles x, y (64 x 64), masked to
// j <= i and decayed, as bf16. Warp: rows 16 (warp % 4), columns 32 (warp / 4).
template <class Cf, int kK>
__device__ void Scores(const bf16* x, int sx, const bf16* y, int sy, bf16* out, bool gated,
                       const gates::Prefix& pre) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * (warp & 3), c0 = 32 * (warp >> 2);
  float acc[4][4] = {};
  if (c0 <= r0 + 15) {
#pragma unroll
    for (int k0 = 0; k0 < kK; k0 += 16) {
      uint32_t a[4];
      tiles::LoadA(a, x, sx, r0, k0);
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        uint32_t b[4];
        tiles::LoadB2(b, y, sy, c0 + 16 * p, k0);
        tiles::Mma(acc[2 * p], a, b[0], b[1]);
        tiles::Mma(acc[2 * p + 1], a, b[2], b[3]);
      }
    }
    gates::MaskAndDecay(acc, r0, c0, gated, pre);
  }
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const int col = c0 + 8 * nt + 2 * t;
    *reinterpret_cast<uint32_t*>(out + (r0 + g) * Cf::SA + col) = tiles::Pack(acc[nt][0], acc[nt][1]);
    *reinterpret_cast<uint32_t*>(out + (r0 + g + 8) * Cf::SA + col) =
        tiles::Pack(acc[nt][2], acc[nt][3]);
  }
}

// acc[j] += a * B[k0.., n-tile tile0 + j]; B stored as X[n][k] (kNK) or
// row-major X[k][n]. kTiles is even.
template <bool kNK, int kTiles>
__device__ __forceinline__ void MmaTiles(float (&acc)[kTiles][4], const uint32_t (&a)[4],
                                         const bf16* x, int sx, int tile0, int k0) {
  static_assert(kTiles % 2 == 0, "pairs of n-tiles");
#pragma unroll
  for (int j = 0; j < kTiles; j += 2) {
    uint32_t b[4];
    if constexpr (kNK) {
      tiles::LoadB2(b, x, sx, 8 * (tile0 + j), k0);
    } else {
      tiles::LoadB2T(b, x, sx, 8 * (tile0 + j), k0);
    }
    tiles::Mma(acc[j], a, b[0], b[1]);
    tiles::Mma(acc[j + 1], a, b[2], b[3]);
  }
}

// Rows of the warp's C tiles times dec[row].
template <int kTiles>
__device__ __forceinline__ void ScaleAccRows(float (&acc)[kTiles][4], const float* dec, int r0) {
  const int g = (threadIdx.x & 31) >> 2;
  const float d0 = dec[r0 + g], d1 = dec[r0 + g + 8];
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
    acc[j][0] *= d0;
    acc[j][1] *= d0;
    acc[j][2] *= d1;
    acc[j][3] *= d1;
  }
}

// The bf16 pairs of a [T][kCols] source at the warp's accumulator places
// (rows as StoreRows places them): zero without a source or for rows with
// no source row. Loaded before the products, so that their latency hides
// behind them: out.add's values (LoadAddRows; added after the products by
// AddRows, past a gated decay of the products) and the rows StoreRows dots
// its output with.
template <int kTiles, int kCols>
__device__ __forceinline__ void LoadRowPairs(const bf16* src, uint32_t (&x)[kTiles][2],
                                             int64_t start, int r0, int tile0, int64_t length,
                                             int64_t shift) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t pos = start + r0 + g + 8 * half - shift;
    const bool inside = src != nullptr && pos >= 0 && pos + shift < length;
#pragma unroll
    for (int j = 0; j < kTiles; ++j) {
      const int col = 8 * (tile0 + j) + 2 * t;
      x[j][half] = inside ? *reinterpret_cast<const uint32_t*>(src + pos * kCols + col) : 0u;
    }
  }
}
template <int kTiles, int kCols>
__device__ __forceinline__ void LoadAddRows(const GradOut& out, uint32_t (&add)[kTiles][2],
                                            int64_t start, int r0, int tile0, int64_t length,
                                            int64_t shift) {
  LoadRowPairs<kTiles, kCols>(out.add != nullptr ? out.add + out.offset : nullptr, add, start, r0,
                              tile0, length, shift);
}
template <int kTiles>
__device__ __forceinline__ void AddRows(float (&acc)[kTiles][4], const uint32_t (&add)[kTiles][2]) {
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float2 a = tiles::Unpack(add[j][half]);
      acc[j][2 * half] += a.x;
      acc[j][2 * half + 1] += a.y;
    }
  }
}

// Writes the warp's rows (those inside the sequence) of a [T][kCols] output;
// position pos goes to row pos - shift (the key delay for d_k, d_v), rows
// with no source skipped. With `dot` set, also adds each row's
// x_row . out_row (x: the phi rows of the same places, LoadRowPairs') into
// dot[row], from the float32 values: the gates' gradient needs q . d_q and
// k . d_k. The two warps that share a row each add once onto zero, so the
// sum does not depend on their order.
template <int kTiles, int kCols>
__device__ __forceinline__ void StoreRows(const GradOut& out, const float (&acc)[kTiles][4],
                                          int64_t start, int r0, int tile0, int64_t length,
                                          int64_t shift = 0, const uint32_t (*x)[2] = nullptr,
                                          float* dot = nullptr) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t pos = start + r0 + g + 8 * half - shift;
    const bool inside = pos >= 0 && pos + shift < length;
    float partial = 0.f;
#pragma unroll
    for (int j = 0; j < kTiles; ++j) {
      const int col = 8 * (tile0 + j) + 2 * t;
      const float a0 = acc[j][2 * half], a1 = acc[j][2 * half + 1];
      if (inside) {
        out.Store2(pos * kCols + col, a0, a1);
        if (dot != nullptr) {
          const float2 xv = tiles::Unpack(x[j][half]);
          partial = fmaf(xv.x, a0, fmaf(xv.y, a1, partial));
        }
      }
    }
    if (dot != nullptr) {  // warp-uniform: every lane shuffles
      partial += __shfl_xor_sync(0xffffffffu, partial, 1);
      partial += __shfl_xor_sync(0xffffffffu, partial, 2);
      if (t == 0 && inside) atomicAdd(dot + pos, partial);
    }
  }
}

// tile[row][0..cols) *= dec[row] (bf16, in place).
__device__ void ScaleTileRows(bf16* tile, int stride, int cols, const float* dec) {
  for (int i = threadIdx.x; i < kC * cols / 2; i += kThreads) {
    const int row = i / (cols / 2), col = (i % (cols / 2)) * 2;
    uint32_t* p = reinterpret_cast<uint32_t*>(tile + row * stride + col);
    const float2 x = tiles::Unpack(*p);
    *p = tiles::Pack(x.x * dec[row], x.y * dec[row]);
  }
}

// The warp's part of a [F][DP] state: rows f0 + g (+8), n-tiles tile0 + j.
template <class Cf>
struct StateMap {
  int f0, tile0;
  __device__ StateMap() {
    const int warp = threadIdx.x >> 5;
    f0 = 16 * (warp % Cf::kMT);
    tile0 = (warp / Cf::kMT) * Cf::NTS;
  }
};

// st = chunk_dec st + X^T Y: X [64][F] (stride sx, already decayed), Y [64][DP].
template <class Cf>
__device__ void UpdateState(const bf16* x, int sx, const bf16* y, bool gated, float chunk_dec,
                            float (&st)[Cf::NTS][4]) {
  const StateMap<Cf> m;
  if (gated) {
#pragma unroll
    for (int j = 0; j < Cf::NTS; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] *= chunk_dec;
    }
  }
#pragma unroll
  for (int k0 = 0; k0 < kC; k0 += 16) {
    uint32_t a[4];
    tiles::LoadAT(a, x, sx, m.f0, k0);
    tiles::MmaRowTiles<false>(st, a, a, y, Cf::SP, 0, m.tile0, Cf::NTS, k0);
  }
}

// Folds the chunk into the state once every warp is done with its outputs:
// X's rows decayed if gated (by q_dec or k_dec), then st = chunk_dec st + X^T Y.
template <class Cf>
__device__ void FoldChunk(const Smem<Cf>& sm, bf16* x, const float* dec, const bf16* y,
                          bool gated, float (&st)[Cf::NTS][4]) {
  __syncthreads();
  if (gated) {
    ScaleTileRows(x, Cf::SQ, Cf::F, dec);
    __syncthreads();
  }
  UpdateState<Cf>(x, Cf::SQ, y, gated, *sm.chunk_dec, st);
}

template <class Cf>
__device__ void StoreStateSmem(const Smem<Cf>& sm, const float (&st)[Cf::NTS][4]) {
  const StateMap<Cf> m;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < Cf::NTS; ++j) {
    const int col = 8 * (m.tile0 + j) + 2 * t;
    *reinterpret_cast<uint32_t*>(sm.state + (m.f0 + g) * Cf::SP + col) =
        tiles::Pack(st[j][0], st[j][1]);
    *reinterpret_cast<uint32_t*>(sm.state + (m.f0 + g + 8) * Cf::SP + col) =
        tiles::Pack(st[j][2], st[j][3]);
  }
}

// Registers -> global [F][kCols] float32 state (kStore), or st = keep * st +
// state (kFold). Columns past kCols (the forward's narrower rows) count as zero.
enum class Io { kStore, kFold };
template <class Cf, Io kIo, int kCols = Cf::DP>
__device__ void StateGlobal(std::conditional_t<kIo == Io::kStore, float*, const float*> base,
                            float (&st)[Cf::NTS][4], float keep = 0.f) {
  const StateMap<Cf> m;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < Cf::NTS; ++j) {
    const int col = 8 * (m.tile0 + j) + 2 * t;
    if (kCols < Cf::DP && col >= kCols) {  // a zero column: only the decay applies
      if constexpr (kIo == Io::kFold) {
#pragma unroll
        for (int e = 0; e < 4; ++e) st[j][e] *= keep;
      }
      continue;
    }
    const int i0 = (m.f0 + g) * kCols + col, i1 = (m.f0 + g + 8) * kCols + col;
    if constexpr (kIo == Io::kStore) {
      *reinterpret_cast<float2*>(base + i0) = make_float2(st[j][0], st[j][1]);
      *reinterpret_cast<float2*>(base + i1) = make_float2(st[j][2], st[j][3]);
    } else {
      const float2 a = *reinterpret_cast<const float2*>(base + i0);
      const float2 b = *reinterpret_cast<const float2*>(base + i1);
      const float x[4] = {a.x, a.y, b.x, b.y};
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] = fmaf(keep, st[j][e], x[e]);
    }
  }
}

// Workspace: the forward states (for d_q; none when the forward's own are
// given, fwd_block_states), then the backward states (for d_k, d_v), each
// [BH][blocks][F][DP], then their decays [BH][blocks] in the same order.
template <class Cf>
struct Workspace {
  float *fwd, *fwd_decays, *bwd, *bwd_decays;
  __device__ __host__ Workspace(const ChunkedLinearBwdParams& p) {
    const int64_t n = p.batch * p.heads * p.blocks;
    const int64_t n_fwd = p.fwd_block_states == nullptr ? n : 0;
    fwd = static_cast<float*>(p.workspace);
    bwd = fwd + n_fwd * Cf::kStateElems;
    fwd_decays = bwd + n * Cf::kStateElems;
    bwd_decays = fwd_decays + n_fwd;
  }
};

// The state a block starts from (st zero on entry): the local states of the
// blocks before it (forward: S) or after it (reverse: dS), pass 1's, folded
// in order, the running sum decaying by each block's total decay.
template <class Cf, bool kReverse>
__device__ void EntryState(const ChunkedLinearBwdParams& p, const Seq<Cf>& s, int64_t blk,
                           float (&st)[Cf::NTS][4]) {
  if (!kReverse && p.fwd_block_states != nullptr) {  // the forward's [F][D + 8] rows
    constexpr int kCols = ChunkedLinearInitialStateCols(Cf::D);
    const float* states = p.fwd_block_states;
    const float* decays = states + p.batch * p.heads * p.blocks * Cf::F * kCols;
    for (int64_t a = 0; a < blk; ++a) {
      const int64_t slot = s.bh * p.blocks + a;
      StateGlobal<Cf, Io::kFold, kCols>(states + slot * Cf::F * kCols, st, decays[slot]);
    }
    return;
  }
  const Workspace<Cf> ws(p);
  const float* states = kReverse ? ws.bwd : ws.fwd;
  const float* decays = kReverse ? ws.bwd_decays : ws.fwd_decays;
  const int64_t first = kReverse ? p.blocks - 1 : 0, step = kReverse ? -1 : 1;
  for (int64_t a = first; a != blk; a += step) {
    const int64_t slot = s.bh * p.blocks + a;
    StateGlobal<Cf, Io::kFold>(states + slot * Cf::kStateElems, st, decays[slot]);
  }
}

struct BlockRange {
  int64_t begin, end;
  __device__ BlockRange(const ChunkedLinearBwdParams& p, int64_t blk) {
    const int64_t n_chunks = (p.length + kC - 1) / kC;
    begin = blk * p.block_chunks;
    end = std::min<int64_t>(n_chunks, begin + p.block_chunks);
  }
};

// Pass 1: a block's local state and total decay. Forward (kReverse false):
// S over blocks 0 .. n-2; backward: dS over blocks 1 .. n-1, chunks in reverse.
// Cf: the pass's own layout (StatesCfg), two CTAs per SM.
template <class Cf, bool kReverse>
__global__ void __launch_bounds__(kThreads, 2) BlockStatesKernel(const ChunkedLinearBwdParams p) {
  static_assert((kReverse ? Cf::kBufV : Cf::kBufQ) == 0, "pass 1's layout");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<Cf> sm(smem_raw);
  const int64_t blk = blockIdx.x + (kReverse ? 1 : 0);
  const int h = blockIdx.y, b = blockIdx.z;
  const Seq<Cf> s(p, b, h);
  const bool gated = s.g != nullptr;
  const BlockRange r(p, blk);
  InitPads(sm);
  float st[Cf::NTS][4] = {};
  double total_f = 0;
  int total_c = 0;
  const unsigned what = kReverse ? (kLoadQ | kLoadDout) : (kLoadK | kLoadV);
  const int64_t n = r.end - r.begin;
  const auto chunk_at = [&](int64_t i) { return kReverse ? r.end - 1 - i : r.begin + i; };
  IssueChunk(sm, 0, s, chunk_at(0), p.length, what);
  for (int64_t i = 0; i < n; ++i) {
    const Smem<Cf> cur = sm.At(int(i & 1));
    LandChunk(cur, s, what);
    if (i + 1 < n) IssueChunk(sm, int((i + 1) & 1), s, chunk_at(i + 1), p.length, what);
    if (gated) ChunkGates(cur.gates, cur.q_dec, cur.k_dec, cur.chunk_dec, &total_f, &total_c);
    if constexpr (kReverse) {
      FoldChunk(cur, cur.q, cur.q_dec, cur.dout, gated, st);
    } else {
      FoldChunk(cur, cur.k, cur.k_dec, cur.v, gated, st);
    }
  }
  const Workspace<Cf> ws(p);
  const int64_t slot = s.bh * p.blocks + blk;
  StateGlobal<Cf, Io::kStore>((kReverse ? ws.bwd : ws.fwd) + slot * Cf::kStateElems, st);
  if (threadIdx.x == 0) {
    (kReverse ? ws.bwd_decays : ws.fwd_decays)[slot] = total_c > 0 ? 0.f : float(exp(total_f));
  }
}

// d_q of one block, chunks in order, from the block's prefix state.
template <class Cf>
__global__ void __launch_bounds__(kThreads, 1) DqKernel(const ChunkedLinearBwdParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<Cf> sm_all(smem_raw);
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Seq<Cf> s(p, b, h);
  const bool gated = s.g != nullptr;
  const BlockRange r(p, blk);
  const tiles::OutputPlace at;
  const int rb = at.rb, r0 = at.r0;
  const int tile0 = at.ch * Cf::NQ;
  InitPads(sm_all);
  float st[Cf::NTS][4] = {};
  EntryState<Cf, false>(p, s, blk, st);
  StoreStateSmem(sm_all, st);
  double unused_f = 0;
  int unused_c = 0;
  constexpr unsigned kWhat = kLoadK | kLoadV | kLoadDout;
  IssueChunk(sm_all, 0, s, r.begin, p.length, kWhat);
  for (int64_t c = r.begin; c < r.end; ++c) {
    const Smem<Cf> sm = sm_all.At(int((c - r.begin) & 1));
    LandChunk(sm, s, kWhat);
    if (c + 1 < r.end) IssueChunk(sm_all, int((c + 1 - r.begin) & 1), s, c + 1, p.length, kWhat);
    gates::Prefix pre{};
    if (gated) pre = ChunkGates(sm.gates, sm.q_dec, sm.k_dec, sm.chunk_dec, &unused_f, &unused_c);
    Scores<Cf, Cf::DP>(sm.dout, Cf::SP, sm.v, Cf::SP, sm.a, gated, pre);
    uint32_t q_rows[Cf::NQ][2];  // gated: q . d_q's q, loaded ahead of the products
    if (s.q_dot != nullptr) {
      LoadRowPairs<Cf::NQ, Cf::F>(s.q, q_rows, c * kC, r0, tile0, p.length, 0);
    }
    __syncthreads();

    float acc[Cf::NQ][4] = {};
    if (blk > 0 || c > r.begin) {  // the state is not empty
#pragma unroll
      for (int k0 = 0; k0 < Cf::DP; k0 += 16) {
        uint32_t a[4];
        tiles::LoadA(a, sm.dout, Cf::SP, r0, k0);
        MmaTiles<true>(acc, a, sm.state, Cf::SP, tile0, k0);
      }
      if (gated) ScaleAccRows(acc, sm.q_dec, r0);
    }
    for (int kk = 0; kk <= rb; ++kk) {
      uint32_t a[4];
      tiles::LoadA(a, sm.a, Cf::SA, r0, 16 * kk);
      MmaTiles<false>(acc, a, sm.k, Cf::SQ, tile0, 16 * kk);
    }
    StoreRows<Cf::NQ, Cf::F>(s.dq, acc, c * kC, r0, tile0, p.length, 0, q_rows, s.q_dot);
    FoldChunk(sm, sm.k, sm.k_dec, sm.v, gated, st);
    __syncthreads();
    StoreStateSmem(sm, st);
  }
}

// d_k and d_v of one block, chunks in reverse, from the state of the later blocks.
template <class Cf>
__global__ void __launch_bounds__(kThreads, 1) DkvKernel(const ChunkedLinearBwdParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<Cf> sm_all(smem_raw);
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Seq<Cf> s(p, b, h);
  const bool gated = s.g != nullptr;
  const BlockRange r(p, blk);
  const tiles::OutputPlace at;
  const int rb = at.rb, r0 = at.r0;
  const int half = at.ch;
  InitPads(sm_all);
  float st[Cf::NTS][4] = {};
  EntryState<Cf, true>(p, s, blk, st);
  StoreStateSmem(sm_all, st);
  const bool last_block = blk == p.blocks - 1;
  double unused_f = 0;
  int unused_c = 0;
  constexpr unsigned kWhat = kLoadQ | kLoadK | kLoadV | kLoadDout;
  IssueChunk(sm_all, 0, s, r.end - 1, p.length, kWhat);
  for (int64_t c = r.end - 1; c >= r.begin; --c) {
    const Smem<Cf> sm = sm_all.At(int((r.end - 1 - c) & 1));
    LandChunk(sm, s, kWhat);
    if (c - 1 >= r.begin) {
      IssueChunk(sm_all, int((r.end - c) & 1), s, c - 1, p.length, kWhat);
    }
    gates::Prefix pre{};
    if (gated) pre = ChunkGates(sm.gates, sm.q_dec, sm.k_dec, sm.chunk_dec, &unused_f, &unused_c);
    Scores<Cf, Cf::F>(sm.q, Cf::SQ, sm.k, Cf::SQ, sm.p, gated, pre);
    Scores<Cf, Cf::DP>(sm.dout, Cf::SP, sm.v, Cf::SP, sm.a, gated, pre);
    __syncthreads();
    const bool state_nonzero = !last_block || c < r.end - 1;
    {  // d_k = exp(b_last - b_j) [v | 1] dS^T + A'^T Q
      const int tile0 = half * Cf::NQ;
      float acc[Cf::NQ][4] = {};
      uint32_t k_rows[Cf::NQ][2];  // gated: k . d_k's k, loaded ahead of the products
      if (s.k_dot != nullptr) {
        LoadRowPairs<Cf::NQ, Cf::F>(s.k, k_rows, c * kC, r0, tile0, p.length, s.delay);
      }
      if (state_nonzero) {
#pragma unroll
        for (int k0 = 0; k0 < Cf::DP; k0 += 16) {
          uint32_t a[4];
          tiles::LoadA(a, sm.v, Cf::SP, r0, k0);
          MmaTiles<true>(acc, a, sm.state, Cf::SP, tile0, k0);
        }
        if (gated) ScaleAccRows(acc, sm.k_dec, r0);
      }
      for (int kk = rb; kk < 4; ++kk) {
        uint32_t a[4];
        tiles::LoadAT(a, sm.a, Cf::SA, r0, 16 * kk);
        MmaTiles<false>(acc, a, sm.q, Cf::SQ, tile0, 16 * kk);
      }
      StoreRows<Cf::NQ, Cf::F>(s.dk, acc, c * kC, r0, tile0, p.length, s.delay, k_rows, s.k_dot);
    }
    {  // d_v = exp(b_last - b_j) K dS[:, :D] + P^T d_num (+ the added gradient)
      const int tile0 = half * Cf::NV;
      float acc[Cf::NV][4] = {};
      uint32_t add[Cf::NV][2];
      LoadAddRows<Cf::NV, Cf::D>(s.dv, add, c * kC, r0, tile0, p.length, s.delay);
      if (state_nonzero) {
#pragma unroll
        for (int k0 = 0; k0 < Cf::F; k0 += 16) {
          uint32_t a[4];
          tiles::LoadA(a, sm.k, Cf::SQ, r0, k0);
          MmaTiles<false>(acc, a, sm.state, Cf::SP, tile0, k0);
        }
        if (gated) ScaleAccRows(acc, sm.k_dec, r0);
      }
      for (int kk = rb; kk < 4; ++kk) {
        uint32_t a[4];
        tiles::LoadAT(a, sm.p, Cf::SA, r0, 16 * kk);
        MmaTiles<false>(acc, a, sm.dout, Cf::SP, tile0, 16 * kk);
      }
      AddRows(acc, add);
      StoreRows<Cf::NV, Cf::D>(s.dv, acc, c * kC, r0, tile0, p.length, s.delay);
    }
    FoldChunk(sm, sm.q, sm.q_dec, sm.dout, gated, st);
    __syncthreads();
    StoreStateSmem(sm, st);
  }
}

// ---- host side -------------------------------------------------------------------

template <typename Kernel>
const char* SetSmem(Kernel kernel, int bytes) {
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

const char* LastError() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// The normalised form's d_den_i = -(dy_i . num_i) / z_i^2 (= -(dy_i . y_i) / z_i,
// from the float32 num rather than the rounded y), one warp per row.
template <int D>
__global__ void __launch_bounds__(256) NormalizedDenGradKernel(const ChunkedLinearBwdParams p) {
  const int64_t row = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= p.batch * p.heads * p.length) return;  // whole warps leave together
  float dot = 0.f;
  const int col = 4 * lane;
  if (col < D) {
    const float4 dy = Load4(static_cast<const bf16*>(p.dy) + row * D + col);
    const float4 n = *reinterpret_cast<const float4*>(p.num + row * D + col);
    dot = dy.x * n.x + dy.y * n.y + dy.z * n.z + dy.w * n.w;
  }
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  if (lane == 0) {
    const float inv_z = 1.f / p.z[row];
    p.d_den[row] = -dot * inv_z * inv_z;
  }
}

template <class Cf, bool kReverse>
using StatesCfg = Cfg<Cf::F, Cf::D, kReverse ? kStatesRev : kStatesFwd>;

template <class Cf>
const char* Launch(const ChunkedLinearBwdParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  const dim3 grid(static_cast<unsigned>(p.blocks), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  const char* err = nullptr;
  if (p.d_num == nullptr) {  // normalised: d_den first, which every kernel below reads
    const int64_t rows = p.batch * p.heads * p.length;
    NormalizedDenGradKernel<Cf::D><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream>>>(p);
  }
  if (p.blocks > 1) {
    const dim3 grid1(static_cast<unsigned>(p.blocks - 1), grid.y, grid.z);
    using Fwd = StatesCfg<Cf, false>;
    using Rev = StatesCfg<Cf, true>;
    if ((err = SetSmem(BlockStatesKernel<Fwd, false>, Fwd::kBytes))) return err;
    if ((err = SetSmem(BlockStatesKernel<Rev, true>, Rev::kBytes))) return err;
    if (p.fwd_block_states == nullptr && !p.skip_dq) {
      BlockStatesKernel<Fwd, false><<<grid1, kThreads, Fwd::kBytes, stream>>>(p);
    }
    // With skip_dkv the wgmma d_k / d_v launch runs its own reverse pass 1.
    if (!p.skip_dkv) BlockStatesKernel<Rev, true><<<grid1, kThreads, Rev::kBytes, stream>>>(p);
    if ((err = LastError())) return err;
  }
  if ((err = SetSmem(DqKernel<Cf>, Cf::kBytes))) return err;
  if ((err = SetSmem(DkvKernel<Cf>, Cf::kBytes))) return err;
  if (!p.skip_dq) DqKernel<Cf><<<grid, kThreads, Cf::kBytes, stream>>>(p);
  if (!p.skip_dkv) DkvKernel<Cf><<<grid, kThreads, Cf::kBytes, stream>>>(p);
  return LastError();
}

template <typename Fn>
auto Dispatch(const ChunkedLinearBwdParams& p, const Fn& fn) {
  const int f = static_cast<int>(p.feature_dim), d = static_cast<int>(p.head_dim);
  if (f == 64 && d == 64) return fn.template operator()<Cfg<64, 64>>();
  if (f == 64 && d == 128) return fn.template operator()<Cfg<64, 128>>();
  if (f == 128 && d == 64) return fn.template operator()<Cfg<128, 64>>();
  return fn.template operator()<Cfg<128, 128>>();
}

struct LaunchFn {
  const ChunkedLinearBwdParams& p;
  template <class Cf>
  const char* operator()() const { return Launch<Cf>(p); }
};

// CTAs per SM of pass 2 (DkvKernel, the slower) and of pass 1 (its two
// kernels run one after the other; the reverse one, the larger).
struct PassOccupancy {
  int blocks, states;
};
struct OccupancyFn {
  template <class Cf>
  PassOccupancy operator()() const {
    using Rev = StatesCfg<Cf, true>;
    return {CtasPerSm(DkvKernel<Cf>, kThreads, Cf::kBytes),
            CtasPerSm(BlockStatesKernel<Rev, true>, kThreads, Rev::kBytes)};
  }
};
struct StateElemsFn {
  template <class Cf>
  int64_t operator()() const { return Cf::kStateElems; }
};

}  // namespace

bool ChunkedLinearBwdSupported(const ChunkedLinearBwdParams& p) {
  const bool dims = (p.feature_dim == 64 || p.feature_dim == 128) &&
                    (p.head_dim == 64 || p.head_dim == 128);
  const bool heads = p.heads >= 1 && p.k_heads >= 1 && p.v_heads >= 1 &&
                     p.heads % p.k_heads == 0 && p.heads % p.v_heads == 0 &&
                     p.g_heads >= 0 && (p.g_heads == 0 || p.heads % p.g_heads == 0);
  const bool sizes = p.batch >= 1 && p.batch <= 65535 && p.heads <= 65535 && p.length >= 1 &&
                     p.key_delay >= 0 && (p.g_heads == 0 || p.key_delay == 0);
  return dims && heads && sizes;
}

void PlanChunkedLinearBwd(ChunkedLinearBwdParams& p) {
  const int64_t n = (p.length + kC - 1) / kC;
  if (p.fwd_block_states != nullptr && p.fwd_block_chunks > 0) {
    p.block_chunks = p.fwd_block_chunks;  // the forward's cut, whose states it has
  } else {
    const PassOccupancy per_sm = Dispatch(p, OccupancyFn{});
    p.block_chunks = PlanBlockChunks(n, p.batch * p.heads, int64_t(p.sm_count) * per_sm.blocks,
                                     int64_t(p.sm_count) * per_sm.states);
  }
  p.blocks = (n + p.block_chunks - 1) / p.block_chunks;
}

int64_t ChunkedLinearBwdWorkspaceBytes(const ChunkedLinearBwdParams& p) {
  if (p.blocks <= 1) return 0;
  const int64_t slots = p.batch * p.heads * p.blocks;
  const int64_t passes = p.fwd_block_states == nullptr ? 2 : 1;  // Workspace's regions
  return passes * (slots * Dispatch(p, StateElemsFn{}) + slots) * 4;
}

const char* LaunchChunkedLinearBwd(const ChunkedLinearBwdParams& p) {
  if (!ChunkedLinearBwdSupported(p)) return "ChunkedLinearBwd: unsupported sizes";
  const bool normalised = p.d_num == nullptr && p.dy && p.num && p.z;
  if (!(p.phi_q && p.phi_k && p.v && (p.d_num || normalised) && p.d_den && p.d_q && p.d_k &&
        p.d_v) ||
      (p.log_gamma != nullptr) != (p.g_heads > 0)) {
    return "ChunkedLinearBwd: missing tensors";
  }
  if (p.blocks < 1 || p.block_chunks < 1 ||
      p.blocks * p.block_chunks < (p.length + kC - 1) / kC) {
    return "ChunkedLinearBwd: call PlanChunkedLinearBwd before launching";
  }
  if (p.blocks > 1 && p.workspace == nullptr) return "ChunkedLinearBwd: workspace missing";
  if (p.hedgehog_logits && !(p.skip_dq && p.skip_dkv)) {
    return "ChunkedLinearBwd: the Hedgehog logits' gradients come from the wgmma kernels";
  }
  return Dispatch(p, LaunchFn{p});
}

}  // namespace linearize::kernels
