// Chunked causal (optionally gated) linear attention on tensor cores; the
// math of detail::ChunkedCausalLinear (chunked_linear.h), chunk C = 64.
//
// One CTA of 8 warps runs a block of chunks of one (b, h) sequentially:
//   phase 1  A = phi_q phi_k^T (64 x 64), causal mask, gate decays -> smem
//   phase 2  [num | den] = exp(b_i) phi_q [S | z] + A [v | 1]      (registers)
//   phase 3  [S | z] = exp(b_last) [S | z] + k_in^T [v | 1]          (registers)
// The denominator rides along as an extra "ones" column of v (and z as an
// extra column of S), so every product is one mma tile loop. S lives in
// float32 registers (the accumulators of phase 3) and as a bf16 copy in
// shared memory for phase 2. bf16 inputs double-buffer their chunks with
// cp.async; float32 inputs are split into hi/lo bf16 planes (tile_mma.cuh).
//
// Gate exponents: b_i = sum of log gates up to i inside the chunk, as a
// float64 prefix plus a count of -inf gates (a gate of exactly 0); b_i - b_j
// is then exact to float32 rounding (no float32 cancellation) and a -inf
// between j and i gives weight 0, as in the reference. Every exponent is <= 0.
//
// Fused maps (bf16): each chunk's raw q and k come in and a phase 0 turns
// them into Hedgehog features in shared memory (float32 logits and softmax),
// so features never go through device memory.
//
// LoLCATs' window fused (bf16 maps, key_delay = 64, OutputKernel<Cf, true>):
// after phase 2 each chunk's queries also score the band of the previous
// chunk's raw keys (this chunk's delayed tile) and the current chunk's (the
// next buffer's delayed tile, waited for after phase 1), and the window's
// g exp(s - c) [v | 1] adds into phase 2's accumulators: numerator and shared
// denominator together, y written once. The sliding-window kernel and the
// linear terms' round trip through device memory drop out of the prefill.
//
// Long sequences with few (b, h) use two passes: pass 1 computes each block's
// local state (phase 3 only); pass 2 (the kernel above) starts each block
// from the earlier blocks' local states, folded in as it starts.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/feature_map/hedgehog_rows.cuh"
#include "kernels/linear_attention/chunk_gates.cuh"
#include "kernels/linear_attention/chunk_plan.h"
#include "kernels/linear_attention/chunked_linear_params.h"
#include "kernels/linear_attention/occupancy.cuh"
#include "kernels/linear_attention/tile_mma.cuh"

namespace linearize::kernels {
namespace {

using tiles::bf16;

constexpr int kC = 64;
constexpr int kThreads = 256;

// kStates: the layout of pass 1 (BlockStatesKernel), which reads no queries
// and keeps no bf16 state copy or score tile: half the shared memory, so two
// of its CTAs share an SM.
template <typename TT, int FF, int DD, bool kFuseMaps, bool kStatesOnly = false>
struct Cfg {
  using T = TT;
  static constexpr int F = FF, D = DD;
  static constexpr bool kFuse = kFuseMaps;
  static constexpr bool kStates = kStatesOnly;
  static constexpr int FH = F / 2;
  static constexpr bool kSplit = std::is_same_v<T, float>;
  static constexpr int DA = D + 8;  // values, a ones column, 7 zero columns
  static_assert(DA == ChunkedLinearInitialStateCols(D), "initial_state layout");
  static constexpr int SQ = tiles::Stride(F);
  static constexpr int SV = tiles::Stride(DA);
  static constexpr int SS = tiles::Stride(DA);
  static constexpr int SA = tiles::Stride(kC);
  static constexpr int SR = tiles::Stride(D);  // raw q / k rows (fused maps)
  static constexpr int kPlanes = kSplit ? 2 : 1;
  static constexpr int kBufs = kSplit ? 1 : 2;
  static constexpr int kQ = kC * SQ;  // elements of one plane
  static constexpr int kV = kC * SV;
  static constexpr int kS = F * SS;
  static constexpr int kA = kC * SA;
  static constexpr int kR = kC * SR;
  static constexpr int kW = FH * SR;  // one transposed map weight [Fh][D]
  // One chunk's inputs: phi_q, phi_k, v (raw q, raw k, v with fused maps);
  // pass 1 no queries.
  static constexpr int kQk = kFuse ? kR : kQ;  // one q or k tile
  static constexpr int kQkTiles = kStates ? 1 : 2;
  static constexpr int kBuf = kPlanes * (kQkTiles * kQk + kV);
  // Buffers, S, A, then (fused) the phi_q, phi_k tiles and the two weights;
  // pass 1 neither S nor A, and phi_k and k's weights alone.
  static constexpr int kElems = kBufs * kBuf + (kStates ? 0 : kPlanes * (kS + kA)) +
                                (kFuse ? kPlanes * kQkTiles * (kQ + kW) : 0);
  // bf16 tiles, then gates [kBufs][64], q decays, k decays, den [64], chunk decay.
  static constexpr int kBytes = kElems * 2 + (kBufs + 3) * kC * 4 + 16;
  // n-tiles (8 columns) of [v | 1]: phase 2 splits them between two warps.
  static constexpr int NT0 = D / 16, NT1 = D / 16 + 1;
  // Phase 3: F/16 m-tiles over 8 warps; F = 64 also splits the columns.
  static constexpr int kMT = F / 16;
  static constexpr int kStateSplit = 8 / kMT;
  static constexpr int NTS = kStateSplit == 1 ? DA / 8 : NT1;
  static_assert(kMT * kStateSplit == 8, "F must be 64 or 128");
  static_assert(D % 16 == 0, "D must be a multiple of 16");
  static_assert(!kFuse || !kSplit, "fused maps are bf16-only (shared memory)");
  static_assert(kBytes <= 227 * 1024, "shared memory");
};

// ---- shared-memory layout -----------------------------------------------------

// Pass 1's layout keeps the same accessors: the query parts (RawQ, PQ, WQ,
// S, A) are empty there and alias the next part.
template <class Cf>
struct Smem {
  bf16* tiles;
  float* gates;  // [kBufs][64]
  float* q_dec;
  float* k_dec;
  float* den;
  float* chunk_dec;
  __device__ explicit Smem(unsigned char* raw) {
    tiles = reinterpret_cast<bf16*>(raw);
    gates = reinterpret_cast<float*>(raw + Cf::kElems * 2);
    q_dec = gates + Cf::kBufs * kC;
    k_dec = q_dec + kC;
    den = k_dec + kC;
    chunk_dec = den + kC;
  }
  __device__ bf16* In(int buf) const { return tiles + buf * Cf::kBuf; }
  static constexpr int kQuery = Cf::kStates ? 0 : 1;  // whether query parts exist
  // Raw q / k tiles (fused maps).
  __device__ bf16* RawQ(int buf) const { return In(buf); }
  __device__ bf16* RawK(int buf) const { return In(buf) + kQuery * Cf::kPlanes * Cf::kR; }
  __device__ bf16* V(int buf) const { return In(buf) + Cf::kPlanes * Cf::kQkTiles * Cf::kQk; }
  __device__ bf16* S() const { return tiles + Cf::kBufs * Cf::kBuf; }
  __device__ bf16* A() const { return S() + kQuery * Cf::kPlanes * Cf::kS; }
  __device__ bf16* PQ() const { return A() + kQuery * Cf::kPlanes * Cf::kA; }  // fused phi_q
  __device__ bf16* PK() const { return PQ() + kQuery * Cf::kQ; }               // fused phi_k
  __device__ bf16* WQ() const { return PK() + Cf::kQ; }
  __device__ bf16* WK() const { return WQ() + kQuery * Cf::kW; }
  // Feature tiles the phases read.
  __device__ bf16* Q(int buf) const { return Cf::kFuse ? PQ() : In(buf); }
  __device__ bf16* K(int buf) const {
    return Cf::kFuse ? PK() : In(buf) + kQuery * Cf::kPlanes * Cf::kQ;
  }
};

// Per-(b, h) global pointers.
template <class Cf>
struct Seq {
  using T = typename Cf::T;
  const T* q;  // phi_q (raw q when fused)
  const T* k;  // phi_k (raw k when fused)
  const T* v;
  const T* wq;  // fused: this head's transposed maps [Fh][D]
  const T* wk;
  const float* g;
  int64_t bh;  // b * H + h
  __device__ Seq(const ChunkedLinearParams& p, int b, int h) {
    const int64_t t = p.length;
    const int64_t qk_cols = Cf::kFuse ? Cf::D : Cf::F;
    bh = int64_t(b) * p.heads + h;
    const int64_t hk = h / (p.heads / p.k_heads), hv = h / (p.heads / p.v_heads);
    q = static_cast<const T*>(p.phi_q) + bh * t * qk_cols;
    k = static_cast<const T*>(p.phi_k) + (int64_t(b) * p.k_heads + hk) * t * qk_cols;
    v = static_cast<const T*>(p.v) + (int64_t(b) * p.v_heads + hv) * t * Cf::D;
    wq = wk = nullptr;
    if constexpr (Cf::kFuse) {
      const int64_t hw = p.k_weight_heads == p.heads ? h : hk;
      wq = static_cast<const T*>(p.q_weight_t) + int64_t(h) * Cf::FH * Cf::D;
      wk = static_cast<const T*>(p.k_weight_t) + hw * Cf::FH * Cf::D;
    }
    g = nullptr;
    if (p.log_gamma != nullptr) {
      const int64_t hg = h / (p.heads / p.g_heads);
      g = p.log_gamma + (int64_t(b) * p.g_heads + hg) * t;
    }
  }
};

// Writes the constant columns of [v | 1] (column D = 1, D+1..D+7 = 0).
template <class Cf>
__device__ void InitOnes(const Smem<Cf>& sm) {
  for (int i = threadIdx.x; i < Cf::kBufs * Cf::kPlanes * kC * 8; i += kThreads) {
    const int col = i % 8, row = (i / 8) % kC, plane = (i / (8 * kC)) % Cf::kPlanes,
              buf = i / (8 * kC * Cf::kPlanes);
    sm.V(buf)[plane * Cf::kV + row * Cf::SV + Cf::D + col] =
        __float2bfloat16_rn(plane == 0 && col == 0 ? 1.f : 0.f);
  }
}

// Fused maps: the weights, once per CTA (asynchronous, in the first group).
template <class Cf>
__device__ void IssueWeights(const Smem<Cf>& sm, const Seq<Cf>& s, bool with_q) {
  if constexpr (Cf::kFuse) {
    using T = typename Cf::T;
    if (with_q) tiles::LoadTile<T, Cf::FH, Cf::D, kThreads>(sm.WQ(), Cf::SR, 0, s.wq, 0, Cf::FH);
    tiles::LoadTile<T, Cf::FH, Cf::D, kThreads>(sm.WK(), Cf::SR, 0, s.wk, 0, Cf::FH);
  }
}

// Loads chunk `chunk` (keys/values delayed) and, if gated, its gates into
// buffer `buf`. Key and value rows whose source is at or past `key_limit`
// are zeros. Two cp.async groups, keys/values/gates first, then the queries
// (empty without kWithQ): waiting for all but the newest group waits for the
// keys and values alone (the fused window's).
template <class Cf, bool kWithQ>
__device__ void IssueChunk(const Smem<Cf>& sm, const Seq<Cf>& s, int buf, int64_t chunk,
                           int64_t length, int64_t delay, int64_t key_limit) {
  using T = typename Cf::T;
  constexpr int kCols = Cf::kFuse ? Cf::D : Cf::F;
  constexpr int kStride = Cf::kFuse ? Cf::SR : Cf::SQ;
  constexpr int kPlane = Cf::kFuse ? Cf::kR : Cf::kQ;
  const int64_t start = chunk * kC;
  bf16* q_tile = Cf::kFuse ? sm.RawQ(buf) : sm.Q(buf);
  bf16* k_tile = Cf::kFuse ? sm.RawK(buf) : sm.K(buf);
  // Key row r sits at position start + r and holds source row start + r - delay.
  tiles::LoadTile<T, kC, kCols, kThreads>(k_tile, kStride, kPlane, s.k, start - delay, key_limit);
  tiles::LoadTile<T, kC, Cf::D, kThreads>(sm.V(buf), Cf::SV, Cf::kV, s.v, start - delay, key_limit);
  if (s.g != nullptr && threadIdx.x < kC) {
    const int64_t t = start + threadIdx.x;
    tiles::CpAsync4(sm.gates + buf * kC + threadIdx.x, s.g + (t < length ? t : 0), t < length);
  }
  tiles::CpAsyncCommit();
  if constexpr (kWithQ) {
    tiles::LoadTile<T, kC, kCols, kThreads>(q_tile, kStride, kPlane, s.q, start, length);
  }
  tiles::CpAsyncCommit();
}

// Phase 0 (fused maps): phi = [softmax(x W), softmax(-x W)] of the raw tile,
// float32 logits; warps 0-3 map q (if with_q), warps 4-7 map k. Rows whose
// source is outside the sequence get phi = 0 (a raw zero row would map to the
// uniform 1 / Fh, which must not count as a key).
template <class Cf>
__device__ void Phase0(const Smem<Cf>& sm, int buf, bool with_q, int64_t start, int64_t length,
                       int64_t delay) {
  if constexpr (Cf::kFuse) {
    constexpr int FH = Cf::FH;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bool is_k = warp >= 4;
    if (!is_k && !with_q) return;
    const int r0 = 16 * (warp & 3);
    const bf16* raw = is_k ? sm.RawK(buf) : sm.RawQ(buf);
    const bf16* w = is_k ? sm.WK() : sm.WQ();
    bf16* out = is_k ? sm.PK() : sm.PQ();
    float acc[FH / 8][4] = {};
#pragma unroll
    for (int k0 = 0; k0 < Cf::D; k0 += 16) {
      uint32_t a[4];
      tiles::LoadA(a, raw, Cf::SR, r0, k0);
#pragma unroll
      for (int j = 0; j < FH / 8; j += 2) {
        uint32_t b[4];
        tiles::LoadB2(b, w, Cf::SR, 8 * j, k0);
        tiles::Mma(acc[j], a, b[0], b[1]);
        tiles::Mma(acc[j + 1], a, b[2], b[3]);
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      hedgehog::RowHalfSoftmax r =
          hedgehog::RowHalfSoftmaxOf<FH / 8>([&](int j, int i) { return acc[j][i]; }, half);
      const int row = r0 + g + 8 * half;
      const int64_t src = start + row - (is_k ? delay : 0);
      const bool valid = src >= 0 && src < length - (is_k ? delay : 0);
      r.ip = valid ? r.ip : 0.f;  // else phi = 0
      r.in = valid ? r.in : 0.f;
#pragma unroll
      for (int j = 0; j < FH / 8; ++j) {
        const int col = 8 * j + 2 * t;
        const float l0 = acc[j][2 * half], l1 = acc[j][2 * half + 1];
        *reinterpret_cast<uint32_t*>(out + row * Cf::SQ + col) = tiles::Pack(r.P(l0), r.P(l1));
        *reinterpret_cast<uint32_t*>(out + row * Cf::SQ + FH + col) =
            tiles::Pack(r.N(l0), r.N(l1));
      }
    }
  }
}

// K <- K * exp(b_last - b_j) row-wise (the keys as they enter the state).
template <class Cf>
__device__ void ScaleKeys(const Smem<Cf>& sm, int buf) {
  constexpr int F = Cf::F;
  bf16* k = sm.K(buf);
  for (int i = threadIdx.x; i < kC * F / 2; i += kThreads) {
    const int row = i / (F / 2), col = (i % (F / 2)) * 2;
    const int idx = row * Cf::SQ + col;
    const float w = sm.k_dec[row];
    float2 x = tiles::Unpack(*reinterpret_cast<const uint32_t*>(k + idx));
    if constexpr (Cf::kSplit) {
      const float2 lo = tiles::Unpack(*reinterpret_cast<const uint32_t*>(k + Cf::kQ + idx));
      x.x += lo.x;
      x.y += lo.y;
    }
    tiles::StorePair<Cf::kSplit>(k, Cf::kQ, idx, x.x * w, x.y * w);
  }
}

// ---- phases ----------------------------------------------------------------------

// Phase 1: A = phi_q phi_k^T masked to j <= i, times exp(b_i - b_j) if gated.
template <class Cf>
__device__ void Phase1(const Smem<Cf>& sm, int buf, bool gated, const gates::Prefix& pre) {
  constexpr bool S = Cf::kSplit;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * (warp & 3), c0 = 32 * (warp >> 2);
  bf16* a_tile = sm.A();
  float acc[4][4] = {};
  if (c0 <= r0 + 15) {
    const bf16* q = sm.Q(buf);
    const bf16* k = sm.K(buf);
#pragma unroll
    for (int k0 = 0; k0 < Cf::F; k0 += 16) {
      uint32_t ah[4], al[4] = {};
      tiles::LoadA(ah, q, Cf::SQ, r0, k0);
      if constexpr (S) tiles::LoadA(al, q + Cf::kQ, Cf::SQ, r0, k0);
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        uint32_t bh[4], bl[4] = {};
        tiles::LoadB2(bh, k, Cf::SQ, c0 + 16 * p, k0);
        if constexpr (S) tiles::LoadB2(bl, k + Cf::kQ, Cf::SQ, c0 + 16 * p, k0);
        tiles::Mma3<S>(acc[2 * p], ah, al, bh[0], bh[1], bl[0], bl[1]);
        tiles::Mma3<S>(acc[2 * p + 1], ah, al, bh[2], bh[3], bl[2], bl[3]);
      }
    }
    gates::MaskAndDecay<S>(acc, r0, c0, gated, pre);  // float32: the exact prefixes
  }
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const int col = c0 + 8 * nt + 2 * t;
    tiles::StorePair<S>(a_tile, Cf::kA, (r0 + g) * Cf::SA + col, acc[nt][0], acc[nt][1]);
    tiles::StorePair<S>(a_tile, Cf::kA, (r0 + g + 8) * Cf::SA + col, acc[nt][2], acc[nt][3]);
  }
}

// Phase 2: acc = exp(b_i) phi_q [S | z] + A [v | 1] for the warp's rows and
// columns (PublishDen then publishes column D, den).
template <class Cf>
__device__ void Phase2(const Smem<Cf>& sm, int buf, bool gated, bool state_nonzero,
                       float (&acc)[Cf::NT1][4]) {
  constexpr bool S = Cf::kSplit;
  const int lane = threadIdx.x & 31, g = lane >> 2;
  const tiles::OutputPlace at;
  const int rb = at.rb, r0 = at.r0;
  const int tile0 = at.ch * Cf::NT0, nt = at.ch ? Cf::NT1 : Cf::NT0;
#pragma unroll
  for (int j = 0; j < Cf::NT1; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  if (state_nonzero) {
    const bf16* q = sm.Q(buf);
#pragma unroll
    for (int k0 = 0; k0 < Cf::F; k0 += 16) {
      uint32_t ah[4], al[4] = {};
      tiles::LoadA(ah, q, Cf::SQ, r0, k0);
      if constexpr (S) tiles::LoadA(al, q + Cf::kQ, Cf::SQ, r0, k0);
      tiles::MmaRowTiles<S>(acc, ah, al, sm.S(), Cf::SS, Cf::kS, tile0, nt, k0);
    }
    if (gated) {
      const float d0 = sm.q_dec[r0 + g], d1 = sm.q_dec[r0 + g + 8];
#pragma unroll
      for (int j = 0; j < Cf::NT1; ++j) {
        acc[j][0] *= d0;
        acc[j][1] *= d0;
        acc[j][2] *= d1;
        acc[j][3] *= d1;
      }
    }
  }
  for (int kk = 0; kk <= rb; ++kk) {  // causal: keys beyond the rows' block are masked
    uint32_t ah[4], al[4] = {};
    tiles::LoadA(ah, sm.A(), Cf::SA, r0, 16 * kk);
    if constexpr (S) tiles::LoadA(al, sm.A() + Cf::kA, Cf::SA, r0, 16 * kk);
    tiles::MmaRowTiles<S>(acc, ah, al, sm.V(buf), Cf::SV, Cf::kV, tile0, nt, 16 * kk);
  }
}

// The window of LoLCATs' hybrid (OutputKernel<Cf, true>), added into phase
// 2's accumulators: acc += g exp(s - c) [v | 1] for the warp's rows and
// columns, s = q k^T * scale over the window keys, c the row's max. The band:
// key u (0..127) is at position chunk_start - 64 + u, the previous chunk's
// raw keys in this buffer's delayed tile (u < 64), the current chunk's in the
// next buffer's; row i sees u in (i, i + 64] (W = 64), so the warp's 16 rows
// need u in [16 rb, 16 rb + 80): five 16-key slices. The warps of a row
// block both score it (each then takes its half of the columns), which
// keeps the softmax in registers.
template <class Cf>
__device__ void WindowIntoAcc(const Smem<Cf>& sm, int buf, bool first_chunk, float gate,
                              float scale, float (&acc)[Cf::NT1][4]) {
  static_assert(Cf::kFuse && !Cf::kSplit, "the window reads the fused maps' raw tiles");
  constexpr int kSlices = 5;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const tiles::OutputPlace at;
  const int rb = at.rb, r0 = at.r0;
  const int tile0 = at.ch * Cf::NT0, nt = at.ch ? Cf::NT1 : Cf::NT0;
  const auto in_band = [&](int u0, bf16* prev, bf16* cur, int stride) {
    return u0 < kC ? prev + u0 * stride : cur + (u0 - kC) * stride;
  };
  float s[2 * kSlices][4] = {};
#pragma unroll
  for (int kk = 0; kk < Cf::D; kk += 16) {
    uint32_t a[4];
    tiles::LoadA(a, sm.RawQ(buf), Cf::SR, r0, kk);
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) {
      uint32_t b[4];
      tiles::LoadB2(b, in_band(16 * (rb + sl), sm.RawK(buf), sm.RawK(buf ^ 1), Cf::SR), Cf::SR, 0,
                    kk);
      tiles::Mma(s[2 * sl], a, b[0], b[1]);
      tiles::Mma(s[2 * sl + 1], a, b[2], b[3]);
    }
  }
  // Mask to the window (and, in the first chunk, to positions >= 0), then
  // g exp(s - c) with the row's exact max c (its own key is always in).
  const int u_min = first_chunk ? kC : 0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int i = r0 + g + 8 * half;
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < 2 * kSlices; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int u = r0 + 8 * j + 2 * t + e;
        const bool valid = u >= u_min && u <= i + kC && u > i;
        float& x = s[j][2 * half + e];
        x = valid ? x * scale : -INFINITY;
        mx = fmaxf(mx, x);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
#pragma unroll
    for (int j = 0; j < 2 * kSlices; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = s[j][2 * half + e];
        x = x == -INFINITY ? 0.f : gate * __expf(x - mx);
      }
    }
  }
  // The weights (registers, as A fragments) times the band's [v | 1].
#pragma unroll
  for (int sl = 0; sl < kSlices; ++sl) {
    const int u0 = 16 * (rb + sl);
    uint32_t a[4], a_lo[4] = {};
    tiles::CToA<false>(s[2 * sl], s[2 * sl + 1], a, a_lo);
    tiles::MmaRowTiles<false>(acc, a, a_lo, u0 < kC ? sm.V(buf) : sm.V(buf ^ 1), Cf::SV, Cf::kV,
                              tile0, nt, u0 % kC);
  }
}

// Publishes the denominator (accumulator column D, in the warps of column
// half 1) to sm.den.
template <class Cf>
__device__ void PublishDen(const Smem<Cf>& sm, const float (&acc)[Cf::NT1][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const tiles::OutputPlace at;
  const int r0 = at.r0;
  if (at.ch == 1 && t == 0) {
    sm.den[r0 + g] = acc[Cf::NT1 - 1][0];
    sm.den[r0 + g + 8] = acc[Cf::NT1 - 1][2];
  }
}

// The warp's part of the state: rows f0 + g (+8), columns 8 (tile0 + j) + 2t.
template <class Cf>
struct StateMap {
  int f0, tile0, nt;
  __device__ StateMap() {
    const int warp = threadIdx.x >> 5;
    f0 = 16 * (warp % Cf::kMT);
    const int sc = warp / Cf::kMT;
    tile0 = Cf::kStateSplit == 1 ? 0 : sc * Cf::NT0;
    nt = Cf::kStateSplit == 1 ? Cf::DA / 8 : (sc ? Cf::NT1 : Cf::NT0);
  }
};

// Phase 3: state = chunk_decay * state + K^T [v | 1] (K already scaled).
template <class Cf>
__device__ void Phase3(const Smem<Cf>& sm, int buf, bool gated, float (&st)[Cf::NTS][4]) {
  constexpr bool S = Cf::kSplit;
  const StateMap<Cf> m;
  if (gated) {
    const float d = *sm.chunk_dec;
#pragma unroll
    for (int j = 0; j < Cf::NTS; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] *= d;
    }
  }
  const bf16* k = sm.K(buf);
#pragma unroll
  for (int k0 = 0; k0 < kC; k0 += 16) {
    uint32_t ah[4], al[4] = {};
    tiles::LoadAT(ah, k, Cf::SQ, m.f0, k0);
    if constexpr (S) tiles::LoadAT(al, k + Cf::kQ, Cf::SQ, m.f0, k0);
    tiles::MmaRowTiles<S>(st, ah, al, sm.V(buf), Cf::SV, Cf::kV, m.tile0, m.nt, k0);
  }
}

template <class Cf>
__device__ void StoreStateSmem(const Smem<Cf>& sm, const float (&st)[Cf::NTS][4]) {
  const StateMap<Cf> m;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < Cf::NTS; ++j) {
    if (j < m.nt) {
      const int col = 8 * (m.tile0 + j) + 2 * t;
      tiles::StorePair<Cf::kSplit>(sm.S(), Cf::kS, (m.f0 + g) * Cf::SS + col, st[j][0], st[j][1]);
      tiles::StorePair<Cf::kSplit>(sm.S(), Cf::kS, (m.f0 + g + 8) * Cf::SS + col, st[j][2],
                                   st[j][3]);
    }
  }
}

// Global [F][DA] float32 state <-> registers; kFold: st = keep * st + state.
enum class Io { kLoad, kStore, kFold };
template <class Cf, Io kIo>
__device__ void StateGlobal(std::conditional_t<kIo == Io::kStore, float*, const float*> base,
                            float (&st)[Cf::NTS][4], float keep = 0.f) {
  const StateMap<Cf> m;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < Cf::NTS; ++j) {
    if (j < m.nt) {
      const int col = 8 * (m.tile0 + j) + 2 * t;
      const int i0 = (m.f0 + g) * Cf::DA + col, i1 = (m.f0 + g + 8) * Cf::DA + col;
      if constexpr (kIo == Io::kStore) {
        *reinterpret_cast<float2*>(base + i0) = make_float2(st[j][0], st[j][1]);
        *reinterpret_cast<float2*>(base + i1) = make_float2(st[j][2], st[j][3]);
      } else {
        const float2 a = *reinterpret_cast<const float2*>(base + i0);
        const float2 b = *reinterpret_cast<const float2*>(base + i1);
        const float x[4] = {a.x, a.y, b.x, b.y};
#pragma unroll
        for (int e = 0; e < 4; ++e) st[j][e] = kIo == Io::kFold ? fmaf(keep, st[j][e], x[e]) : x[e];
      }
    }
  }
}

// Final state -> kv [F][D], k_sum [F].
template <class Cf>
__device__ void StoreFinalState(const ChunkedLinearParams& p, int64_t bh,
                                const float (&st)[Cf::NTS][4]) {
  constexpr int F = Cf::F, D = Cf::D;
  const StateMap<Cf> m;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < Cf::NTS; ++j) {
    if (j < m.nt) {
      const int col = 8 * (m.tile0 + j) + 2 * t;
      const int r0 = m.f0 + g, r1 = r0 + 8;
      if (col < D) {
        if (p.kv != nullptr) {
          tiles::StoreOut2(p.kv + (bh * F + r0) * D + col, st[j][0], st[j][1]);
          tiles::StoreOut2(p.kv + (bh * F + r1) * D + col, st[j][2], st[j][3]);
        }
      } else if (col == D && p.k_sum != nullptr) {
        p.k_sum[bh * F + r0] = st[j][0];
        p.k_sum[bh * F + r1] = st[j][2];
      }
    }
  }
}

// ---- kernels -----------------------------------------------------------------------

template <class Cf>
struct Workspace {
  float* states;  // [B * H][blocks][F][DA]
  float* decays;  // [B * H][blocks]
  __device__ __host__ Workspace(void* base, int64_t bh_total, int64_t blocks) {
    states = static_cast<float*>(base);
    decays = states + bh_total * blocks * Cf::F * Cf::DA;
  }
};

// Pass 1: the local state of every block but the last, and its total decay
// (Cf: the pass-1 layout, two CTAs per SM).
template <class Cf>
__global__ void __launch_bounds__(kThreads, 2) BlockStatesKernel(const ChunkedLinearParams p) {
  static_assert(Cf::kStates, "pass 1 takes its own layout");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<Cf> sm(smem_raw);
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Seq<Cf> s(p, b, h);
  const bool gated = s.g != nullptr;
  const int64_t n_chunks = (p.length + kC - 1) / kC;
  const int64_t c_begin = blk * p.block_chunks;
  const int64_t c_end = std::min<int64_t>(n_chunks, c_begin + p.block_chunks);
  // Keys at positions >= length are zero rows (a padded tail row must not
  // bring a real key into the state).
  const int64_t key_limit = p.length - p.key_delay;
  InitOnes(sm);
  IssueWeights(sm, s, /*with_q=*/false);
  float st[Cf::NTS][4] = {};
  double total_f = 0;
  int total_c = 0;
  if constexpr (!Cf::kSplit)
    IssueChunk<Cf, false>(sm, s, 0, c_begin, p.length, p.key_delay, key_limit);
  for (int64_t c = c_begin; c < c_end; ++c) {
    int buf = 0;
    if constexpr (Cf::kSplit) {
      __syncthreads();
      IssueChunk<Cf, false>(sm, s, 0, c, p.length, p.key_delay, key_limit);
      tiles::CpAsyncWaitAll();
      __syncthreads();
    } else {
      buf = int(c - c_begin) & 1;
      tiles::CpAsyncWaitAll();
      __syncthreads();
      if (c + 1 < c_end) {
        IssueChunk<Cf, false>(sm, s, buf ^ 1, c + 1, p.length, p.key_delay, key_limit);
      }
    }
    if constexpr (Cf::kFuse) {
      Phase0(sm, buf, /*with_q=*/false, c * kC, p.length, p.key_delay);
      __syncthreads();
    }
    if (gated) {
      if (threadIdx.x < 32) {
        const gates::Prefix pre = gates::ScanGates(sm.gates + buf * kC);
        double lf;
        int lc;
        gates::PublishDecays(pre, sm.q_dec, sm.k_dec, sm.chunk_dec, lf, lc);
        total_f += lf;
        total_c += lc;
      }
      __syncthreads();
      ScaleKeys(sm, buf);
      __syncthreads();
    }
    Phase3(sm, buf, gated, st);
  }
  const Workspace<Cf> ws(p.workspace, p.batch * p.heads, p.blocks);
  const int64_t slot = s.bh * p.blocks + blk;
  StateGlobal<Cf, Io::kStore>(ws.states + slot * Cf::F * Cf::DA, st);
  if (threadIdx.x == 0) ws.decays[slot] = total_c > 0 ? 0.f : float(exp(total_f));
}

// The state block blk starts from: the initial state (or zero), then each
// earlier block's local state (pass 1's) folded in after the running sum
// decays by that block's total decay.
template <class Cf>
__device__ void EntryState(const ChunkedLinearParams& p, int64_t bh, int blk,
                           float (&st)[Cf::NTS][4]) {
  if (p.initial_state != nullptr) {
    StateGlobal<Cf, Io::kLoad>(p.initial_state + bh * Cf::F * Cf::DA, st);
  }
  if (p.blocks <= 1) return;
  const Workspace<Cf> ws(p.workspace, p.batch * p.heads, p.blocks);
  for (int a = 0; a < blk; ++a) {
    const int64_t slot = bh * p.blocks + a;
    StateGlobal<Cf, Io::kFold>(ws.states + slot * Cf::F * Cf::DA, st, ws.decays[slot]);
  }
}

// Pass 2 (or the only pass): outputs of one block, from its entry state;
// kWindow: LoLCATs' window fused (WindowIntoAcc).
template <class Cf, bool kWindow>
__global__ void __launch_bounds__(kThreads, 1) OutputKernel(const ChunkedLinearParams p) {
  using T = typename Cf::T;
  constexpr int D = Cf::D;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<Cf> sm(smem_raw);
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Seq<Cf> s(p, b, h);
  const bool gated = s.g != nullptr;
  const int64_t n_chunks = (p.length + kC - 1) / kC;
  const int64_t c_begin = blk * p.block_chunks;
  const int64_t c_end = std::min<int64_t>(n_chunks, c_begin + p.block_chunks);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  // Keys at positions >= length are zero rows (a padded tail row must not
  // bring a real key into the state). The window reads the raw keys up to
  // the end: phase 0 gives the later positions zero features.
  const int64_t key_limit = kWindow ? p.length : p.length - p.key_delay;
  const float gate = kWindow ? p.window_gate[h] : 0.f;

  InitOnes(sm);
  IssueWeights(sm, s, /*with_q=*/true);
  float st[Cf::NTS][4] = {};
  EntryState<Cf>(p, s.bh, blk, st);
  StoreStateSmem(sm, st);
  if constexpr (!Cf::kSplit) {
    IssueChunk<Cf, true>(sm, s, 0, c_begin, p.length, p.key_delay, key_limit);
  }

  for (int64_t c = c_begin; c < c_end; ++c) {
    int buf = 0;
    if constexpr (Cf::kSplit) {
      __syncthreads();
      IssueChunk<Cf, true>(sm, s, 0, c, p.length, p.key_delay, key_limit);
      tiles::CpAsyncWaitAll();
      __syncthreads();
    } else {
      buf = int(c - c_begin) & 1;
      tiles::CpAsyncWaitAll();
      __syncthreads();
      if (c + 1 < c_end) {
        IssueChunk<Cf, true>(sm, s, buf ^ 1, c + 1, p.length, p.key_delay, key_limit);
      } else if constexpr (kWindow) {  // the window's current keys: the next delayed tile
        IssueChunk<Cf, false>(sm, s, buf ^ 1, c + 1, p.length, p.key_delay, key_limit);
      }
    }
    if constexpr (Cf::kFuse) {
      Phase0(sm, buf, /*with_q=*/true, c * kC, p.length, p.key_delay);
      __syncthreads();
    }
    gates::Prefix pre{};
    if (gated) {
      pre = gates::ScanGates(sm.gates + buf * kC);
      if (warp == 0) {
        double lf;
        int lc;
        gates::PublishDecays(pre, sm.q_dec, sm.k_dec, sm.chunk_dec, lf, lc);
      }
    }
    Phase1(sm, buf, gated, pre);
    // The next buffer's keys and values (the window's; its queries may still land).
    if constexpr (kWindow) tiles::CpAsyncWaitGroup<1>();
    __syncthreads();
    float acc[Cf::NT1][4];
    const bool state_nonzero =
        (p.blocks > 1 && blk > 0) || c > c_begin || p.initial_state != nullptr;
    Phase2(sm, buf, gated, state_nonzero, acc);
    if constexpr (kWindow) {
      WindowIntoAcc(sm, buf, c == 0, gate, p.window_scale, acc);
    }
    PublishDen(sm, acc);
    if (gated) ScaleKeys(sm, buf);
    __syncthreads();

    // Epilogue: num / den / y for the warp's rows and columns.
    const tiles::OutputPlace at;
    const int ch = at.ch, r0 = at.r0;
    const int tile0 = ch * Cf::NT0, nt = ch ? Cf::NT1 : Cf::NT0;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = r0 + g + 8 * half;
      const int64_t pos = c * kC + row;
      if (pos < p.length) {
        const int64_t out_row = s.bh * p.length + pos;
        const float den = sm.den[row];
        const float inv = 1.f / (kWindow ? den : den + p.eps);  // the window's den is >= g
#pragma unroll
        for (int j = 0; j < Cf::NT1; ++j) {
          const int col = 8 * (tile0 + j) + 2 * t;
          if (j < nt && col < D) {
            const float x0 = acc[j][2 * half], x1 = acc[j][2 * half + 1];
            if (p.num != nullptr) tiles::StoreOut2(p.num, p.num_bf16, out_row * D + col, x0, x1);
            if (p.y != nullptr) {
              tiles::StoreOut2(static_cast<T*>(p.y) + out_row * D + col, x0 * inv, x1 * inv);
            }
          }
        }
        if (p.den != nullptr && ch == 1 && t == 0) p.den[out_row] = den;
      }
    }

    Phase3(sm, buf, gated, st);
    StoreStateSmem(sm, st);
  }
  if (blk == p.blocks - 1) StoreFinalState<Cf>(p, s.bh, st);
}

// ---- host side ---------------------------------------------------------------------

template <class Cf>
using StatesCfg = Cfg<typename Cf::T, Cf::F, Cf::D, Cf::kFuse, true>;

// CTAs per SM of the two passes.
struct PassOccupancy {
  int output, states;
};
template <class Cf>
PassOccupancy Occupancies() {
  using Sf = StatesCfg<Cf>;
  return {CtasPerSm(OutputKernel<Cf, false>, kThreads, Cf::kBytes),
          CtasPerSm(BlockStatesKernel<Sf>, kThreads, Sf::kBytes)};
}

// Pass 1 (blocks > 1).
template <class Cf>
cudaError_t LaunchBlockStates(const ChunkedLinearParams& p) {
  if (p.blocks <= 1) return cudaSuccess;
  using Sf = StatesCfg<Cf>;
  const cudaError_t err = cudaFuncSetAttribute(
      BlockStatesKernel<Sf>, cudaFuncAttributeMaxDynamicSharedMemorySize, Sf::kBytes);
  if (err != cudaSuccess) return err;
  const dim3 grid1(static_cast<unsigned>(p.blocks - 1), static_cast<unsigned>(p.heads),
                   static_cast<unsigned>(p.batch));
  BlockStatesKernel<Sf><<<grid1, kThreads, Sf::kBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
  return cudaGetLastError();
}

template <class Cf>
const char* Launch(const ChunkedLinearParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  const dim3 grid(static_cast<unsigned>(p.blocks), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  cudaError_t err = LaunchBlockStates<Cf>(p);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  const auto output = [&](auto kernel) {
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cf::kBytes);
    if (e != cudaSuccess) return e;
    kernel<<<grid, kThreads, Cf::kBytes, stream>>>(p);
    return cudaGetLastError();
  };
  if constexpr (Cf::kFuse) {
    err =
        p.window_gate != nullptr ? output(OutputKernel<Cf, true>) : output(OutputKernel<Cf, false>);
  } else {
    err = output(OutputKernel<Cf, false>);
  }
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// Calls fn.template operator()<Cfg<...>>() for the params' instantiation.
template <typename Fn>
auto Dispatch(const ChunkedLinearParams& p, const Fn& fn) {
  const bool f32 = p.type == ElementType::kF32;
  const bool fuse = p.q_weight_t != nullptr;
  const int f = static_cast<int>(p.feature_dim), d = static_cast<int>(p.head_dim);
#define LINEARIZE_CASE(TT, FF, DD, FU) \
  if (f == FF && d == DD) return fn.template operator()<Cfg<TT, FF, DD, FU>>();
  if (f32) {
    LINEARIZE_CASE(float, 64, 64, false)
    LINEARIZE_CASE(float, 64, 128, false)
    LINEARIZE_CASE(float, 128, 64, false)
    LINEARIZE_CASE(float, 128, 128, false)
  } else if (fuse) {
    LINEARIZE_CASE(bf16, 64, 64, true)
    LINEARIZE_CASE(bf16, 64, 128, true)
    LINEARIZE_CASE(bf16, 128, 64, true)
    LINEARIZE_CASE(bf16, 128, 128, true)
  } else {
    LINEARIZE_CASE(bf16, 64, 64, false)
    LINEARIZE_CASE(bf16, 64, 128, false)
    LINEARIZE_CASE(bf16, 128, 64, false)
    LINEARIZE_CASE(bf16, 128, 128, false)
  }
#undef LINEARIZE_CASE
  return fn.template operator()<Cfg<bf16, 128, 128, false>>();  // unreachable when Supported()
}

struct OccupancyFn {
  template <class Cf>
  PassOccupancy operator()() const {
    return Occupancies<Cf>();
  }
};
struct LaunchFn {
  const ChunkedLinearParams& p;
  template <class Cf>
  const char* operator()() const {
    return Launch<Cf>(p);
  }
};

}  // namespace

bool ChunkedLinearSupported(const ChunkedLinearParams& p) {
  const bool dims =
      (p.feature_dim == 64 || p.feature_dim == 128) && (p.head_dim == 64 || p.head_dim == 128);
  const bool type = p.type == ElementType::kF32 || p.type == ElementType::kBF16;
  const bool heads = p.heads >= 1 && p.k_heads >= 1 && p.v_heads >= 1 && p.heads % p.k_heads == 0 &&
                     p.heads % p.v_heads == 0 &&
                     (p.log_gamma == nullptr || (p.g_heads >= 1 && p.heads % p.g_heads == 0));
  const bool sizes = p.batch >= 1 && p.batch <= 65535 && p.heads <= 65535 && p.length >= 1 &&
                     p.key_delay >= 0 && (p.log_gamma == nullptr || p.key_delay == 0);
  const bool fuse =
      p.q_weight_t == nullptr || (p.type == ElementType::kBF16 && p.k_weight_t != nullptr &&
                                  (p.k_weight_heads == p.heads || p.k_weight_heads == p.k_heads));
  const bool window = p.window_gate == nullptr ||
                      (p.q_weight_t != nullptr && p.key_delay == kC && p.log_gamma == nullptr);
  return dims && type && heads && sizes && fuse && window;
}

void PlanChunkedLinear(ChunkedLinearParams& p) {
  const int64_t n = (p.length + kC - 1) / kC;
  const PassOccupancy per_sm = Dispatch(p, OccupancyFn{});
  p.block_chunks = PlanBlockChunks(n, p.batch * p.heads, int64_t(p.sm_count) * per_sm.output,
                                   int64_t(p.sm_count) * per_sm.states);
  p.blocks = (n + p.block_chunks - 1) / p.block_chunks;
}

int64_t ChunkedLinearWorkspaceBytes(const ChunkedLinearParams& p) {
  if (p.blocks <= 1) return 0;
  const int64_t da = p.head_dim + 8;
  const int64_t slots = p.batch * p.heads * p.blocks;
  return slots * p.feature_dim * da * 4 + slots * 4;
}

const char* LaunchChunkedLinear(const ChunkedLinearParams& p) {
  if (!ChunkedLinearSupported(p)) return "ChunkedLinear: unsupported sizes or element type";
  if (p.blocks < 1 || p.block_chunks < 1 || p.blocks * p.block_chunks < (p.length + kC - 1) / kC) {
    return "ChunkedLinear: call PlanChunkedLinear before launching";
  }
  if (p.blocks > 1 && p.workspace == nullptr) return "ChunkedLinear: workspace missing";
  if (p.window_gate != nullptr && (p.y == nullptr || p.num != nullptr || p.den != nullptr)) {
    return "ChunkedLinear: the fused window writes y alone (no num / den)";
  }
  if (p.phi_q_out != nullptr || p.phi_k_out != nullptr || p.y_den != nullptr) {
    return "ChunkedLinear: the fused maps' training outputs need the wgmma kernel";
  }
  return Dispatch(p, LaunchFn{p});
}

}  // namespace linearize::kernels
