// Warp-level tensor-core helpers shared by the attention kernels (.cu only,
// no ATen): bf16 mma.sync m16n8k16 with float32 accumulators, ldmatrix
// fragment loads from shared memory, cp.async copies, and the "split" mode
// that float32 inputs use.
//
// Split mode: a float32 operand x is kept as two bf16 planes, hi = bf16(x)
// and lo = bf16(x - hi); a product is hi*hi + hi*lo + lo*hi (the lo*lo term is
// below float32 rounding), so three bf16 mma give ~16 mantissa bits, enough
// for float32-input kernels to match a float32 reference to ~1e-5.
//
// Shared-memory tiles are row-major bf16 with a row stride (in elements) that
// is 8 mod 16, so the eight 16-byte rows an ldmatrix reads land in distinct
// banks. Tile(x) gives such a stride for a row of x elements (x % 8 == 0).
//
// Fragment layouts (g = lane / 4, t = lane % 4), for m16n8k16:
//   A (16x16): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16x8):  c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Two C tiles side by side (16x16) are exactly an A fragment (the
// flash-attention trick), see CToA.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace linearize::kernels::tiles {

using bf16 = __nv_bfloat16;

// Row stride (elements) for a tile row of `cols` bf16: 8 mod 16.
__host__ __device__ constexpr int Stride(int cols) { return cols % 16 == 0 ? cols + 8 : cols; }

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- ldmatrix ---------------------------------------------------------------

__device__ __forceinline__ void LdX4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void LdX4T(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void LdX2(uint32_t (&r)[2], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void LdX2T(uint32_t (&r)[2], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(SmemAddr(p)));
}

// A fragment (16x16 at rows m0, cols k0) of a row-major [m][k] tile.
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const bf16* base, int stride, int m0,
                                      int k0) {
  const int l = threadIdx.x & 31;
  LdX4(a, base + (m0 + (l & 15)) * stride + k0 + (l >> 4) * 8);
}
// A fragment of A[m][k] stored transposed, as X[k][m].
__device__ __forceinline__ void LoadAT(uint32_t (&a)[4], const bf16* base, int stride, int m0,
                                       int k0) {
  const int l = threadIdx.x & 31;
  LdX4T(a, base + (k0 + (l & 7) + ((l >> 4) << 3)) * stride + m0 + ((l >> 3) & 1) * 8);
}
// B fragments of two n-tiles (n0, n0 + 8), k-slice k0..k0+15, of B[k][n]
// stored as X[n][k]: b[0..1] for n-tile n0, b[2..3] for n0 + 8.
__device__ __forceinline__ void LoadB2(uint32_t (&b)[4], const bf16* base, int stride, int n0,
                                       int k0) {
  const int l = threadIdx.x & 31;
  LdX4(b, base + (n0 + (l & 7) + ((l >> 4) << 3)) * stride + k0 + ((l >> 3) & 1) * 8);
}
// One n-tile of B[k][n] stored as X[n][k].
__device__ __forceinline__ void LoadB1(uint32_t (&b)[2], const bf16* base, int stride, int n0,
                                       int k0) {
  const int l = threadIdx.x & 31;
  LdX2(b, base + (n0 + (l & 7)) * stride + k0 + ((l >> 3) & 1) * 8);
}
// Two n-tiles of B[k][n] stored row-major as X[k][n].
__device__ __forceinline__ void LoadB2T(uint32_t (&b)[4], const bf16* base, int stride, int n0,
                                        int k0) {
  const int l = threadIdx.x & 31;
  LdX4T(b, base + (k0 + (l & 7) + (((l >> 3) & 1) << 3)) * stride + n0 + (l >> 4) * 8);
}
// One n-tile of B[k][n] stored as X[k][n].
__device__ __forceinline__ void LoadB1T(uint32_t (&b)[2], const bf16* base, int stride, int n0,
                                        int k0) {
  const int l = threadIdx.x & 31;
  LdX2T(b, base + (k0 + (l & 7) + (((l >> 3) & 1) << 3)) * stride + n0);
}

// ---- mma ----------------------------------------------------------------------

__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c += a * b with split operands when kSplit (ah/al, bh/bl the hi/lo planes).
template <bool kSplit>
__device__ __forceinline__ void Mma3(float (&c)[4], const uint32_t (&ah)[4],
                                     const uint32_t (&al)[4], uint32_t bh0, uint32_t bh1,
                                     uint32_t bl0, uint32_t bl1) {
  if constexpr (kSplit) {
    Mma(c, al, bh0, bh1);
    Mma(c, ah, bl0, bl1);
  }
  Mma(c, ah, bh0, bh1);
}

// ---- packing ------------------------------------------------------------------

__device__ __forceinline__ uint32_t Pack(float x0, float x1) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  return *reinterpret_cast<const uint32_t*>(&h);
}
// hi/lo split of a pair: hi = bf16(x), lo = bf16(x - hi).
__device__ __forceinline__ void Split(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = Pack(x0 - __low2float(h), x1 - __high2float(h));
}
__device__ __forceinline__ float2 Unpack(uint32_t v) {
  const __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162*>(&v);
  return __bfloat1622float2(h);
}

// Two C tiles (n-tiles 2kk, 2kk+1 of a row block) as the A fragment of the
// k-slice 16kk..16kk+15; with kSplit also the lo part.
template <bool kSplit>
__device__ __forceinline__ void CToA(const float (&c0)[4], const float (&c1)[4], uint32_t (&ah)[4],
                                     uint32_t (&al)[4]) {
  if constexpr (kSplit) {
    Split(c0[0], c0[1], ah[0], al[0]);
    Split(c0[2], c0[3], ah[1], al[1]);
    Split(c1[0], c1[1], ah[2], al[2]);
    Split(c1[2], c1[3], ah[3], al[3]);
  } else {
    ah[0] = Pack(c0[0], c0[1]);
    ah[1] = Pack(c0[2], c0[3]);
    ah[2] = Pack(c1[0], c1[1]);
    ah[3] = Pack(c1[2], c1[3]);
  }
}

// Stores a float pair at (row, col) of a bf16 tile (and its lo plane).
template <bool kSplit>
__device__ __forceinline__ void StorePair(bf16* hi, int lo_offset, int index, float x0, float x1) {
  if constexpr (kSplit) {
    uint32_t h, l;
    Split(x0, x1, h, l);
    *reinterpret_cast<uint32_t*>(hi + index) = h;
    *reinterpret_cast<uint32_t*>(hi + lo_offset + index) = l;
  } else {
    *reinterpret_cast<uint32_t*>(hi + index) = Pack(x0, x1);
  }
}

// ---- row-block products ----------------------------------------------------

// Where an output-shaped warp of eight works: row block rb (rows r0 = 16 rb
// .. r0 + 15) of a 64-row chunk, column half ch. Warps w and w + 4 share a
// scheduler, and the in-chunk products are causal (row block rb multiplies
// rb + 1 key slices), so the second column half takes the row blocks in
// reverse: each scheduler then runs one long and one short row block.
struct OutputPlace {
  int rb, ch, r0;
  __device__ OutputPlace() {
    const int warp = threadIdx.x >> 5;
    ch = warp >> 2;
    rb = ch ? 3 - (warp & 3) : warp & 3;
    r0 = 16 * rb;
  }
};

// acc[j] += A_frag (rows r0.., k-slice k0) * B[k0.., n-tile tile0 + j] for the
// warp's nt n-tiles, B stored row-major [k][n] (smem `b`, stride sb, lo plane
// at b + lo_b).
template <bool S, int kMaxTiles>
__device__ __forceinline__ void MmaRowTiles(float (&acc)[kMaxTiles][4], const uint32_t (&ah)[4],
                                            const uint32_t (&al)[4], const bf16* b, int sb,
                                            int lo_b, int tile0, int nt, int k0) {
#pragma unroll
  for (int j = 0; j < kMaxTiles; j += 2) {
    if (j + 1 < kMaxTiles && j + 1 < nt) {
      uint32_t bh[4], bl[4] = {};
      LoadB2T(bh, b, sb, 8 * (tile0 + j), k0);
      if constexpr (S) LoadB2T(bl, b + lo_b, sb, 8 * (tile0 + j), k0);
      Mma3<S>(acc[j], ah, al, bh[0], bh[1], bl[0], bl[1]);
      Mma3<S>(acc[(j + 1) % kMaxTiles], ah, al, bh[2], bh[3], bl[2], bl[3]);
    } else if (j < nt) {
      uint32_t bh[2], bl[2] = {};
      LoadB1T(bh, b, sb, 8 * (tile0 + j), k0);
      if constexpr (S) LoadB1T(bl, b + lo_b, sb, 8 * (tile0 + j), k0);
      Mma3<S>(acc[j], ah, al, bh[0], bh[1], bl[0], bl[1]);
    }
  }
}

// out[j] += x(rows m0 .. m0 + 15, columns 0 .. kK - 1) * y(rows 0 .. kK - 1,
// columns n0 + 8 j ..), x and y bf16 row-major in shared memory (y read as
// transposed B fragments), kTiles (even) 8-column output tiles.
template <int kK, int kTiles>
__device__ __forceinline__ void RowBlockTimesRows(float (&out)[kTiles][4], const bf16* x, int sx,
                                                  int m0, const bf16* y, int sy, int n0) {
#pragma unroll
  for (int k0 = 0; k0 < kK; k0 += 16) {
    uint32_t a[4];
    LoadA(a, x, sx, m0, k0);
#pragma unroll
    for (int j = 0; j < kTiles; j += 2) {
      uint32_t b[4];
      LoadB2T(b, y, sy, n0 + 8 * j, k0);
      Mma(out[j], a, b[0], b[1]);
      Mma(out[j + 1], a, b[2], b[3]);
    }
  }
}

// ---- cp.async -----------------------------------------------------------------

// 16-byte copy global -> shared; copies 0 bytes (zero-fills) when !valid.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}
// The same, to a shared-space address (SmemAddr's): a loop that steps
// through a tile keeps one 32-bit register for it, not a generic pointer.
__device__ __forceinline__ void CpAsync16At(uint32_t smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(SmemAddr(smem)), "l"(gmem),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_group 0;\n" ::); }
// Waits for all but the newest kPending committed groups (<1>: the next
// tile's, in flight).
template <int kPending>
__device__ __forceinline__ void CpAsyncWaitGroup() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// ---- tile loads -------------------------------------------------------------

// The rows [lo, hi) of a kRows-row tile whose row 0 is sequence row
// first_row (negative before the start) that lie in [0, limit): found once
// per tile, so each row's copy tests two ints instead of 64-bit positions.
template <int kRows>
struct ValidRows {
  int lo, hi;
  __device__ ValidRows(int64_t first_row, int64_t limit) {
    const int64_t left = limit - first_row;
    lo = static_cast<int>(first_row < 0 ? (-first_row < kRows ? -first_row : kRows) : 0);
    hi = static_cast<int>(left < 0 ? 0 : left < kRows ? left : kRows);
  }
  __device__ bool Has(int row) const { return row >= lo && row < hi; }
};

// Loads rows [0, rows) x cols of a tile whose row r comes from global row
// src_row(r) (negative or >= limit: zeros) into a bf16 smem tile (stride
// `stride`); element type T = bf16 (cp.async, asynchronous: commit and wait
// separately) or float (synchronous, split into hi/lo planes). `gmem` points at
// row 0 of the sequence; rows are `cols` elements apart (contiguous).
template <typename T, int kRows, int kCols, int kThreads>
__device__ __forceinline__ void LoadTile(bf16* smem, int stride, int lo_offset, const T* gmem,
                                         int64_t first_row, int64_t limit) {
  if constexpr (sizeof(T) == 2) {
    // A thread copies the same 16-byte column of every kStep-th row: the
    // addresses step by adds, and the tile's valid rows are found once (an
    // offset from each copy's index took ~40 instructions a copy, half of
    // some window kernels' instructions; ncu, session 22).
    constexpr int kVec = 8;  // bf16 per 16 bytes
    constexpr int kPerRow = kCols / kVec;
    constexpr int kStep = kThreads / kPerRow;
    static_assert(kThreads % kPerRow == 0 && kRows % kStep == 0, "whole rows per step");
    if (threadIdx.x >= kThreads) return;  // the first kThreads threads copy it all
    const int r0 = threadIdx.x / kPerRow, c = (threadIdx.x % kPerRow) * kVec;
    const ValidRows<kRows> rows(first_row, limit);
    uint32_t dst = SmemAddr(smem + r0 * stride + c);
    const T* src = gmem + (first_row + r0) * kCols + c;
#pragma unroll
    for (int j = 0; j < kRows / kStep; ++j, dst += kStep * stride * 2, src += kStep * kCols) {
      const bool valid = rows.Has(r0 + j * kStep);
      CpAsync16At(dst, valid ? src : gmem, valid);
    }
  } else {
    constexpr int kVec = 4;
    constexpr int kPerRow = kCols / kVec;
    for (int i = threadIdx.x; i < kRows * kPerRow; i += kThreads) {
      const int r = i / kPerRow, c = (i % kPerRow) * kVec;
      const int64_t src = first_row + r;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (src >= 0 && src < limit) x = *reinterpret_cast<const float4*>(gmem + src * kCols + c);
      uint32_t h0, l0, h1, l1;
      Split(x.x, x.y, h0, l0);
      Split(x.z, x.w, h1, l1);
      *reinterpret_cast<uint2*>(smem + r * stride + c) = make_uint2(h0, h1);
      *reinterpret_cast<uint2*>(smem + lo_offset + r * stride + c) = make_uint2(l0, l1);
    }
  }
}

// ---- element conversion -----------------------------------------------------

template <typename T>
__device__ __forceinline__ float ToF(T v);
template <>
__device__ __forceinline__ float ToF<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float ToF<bf16>(bf16 v) {
  return __bfloat162float(v);
}

// Stores two consecutive outputs.
__device__ __forceinline__ void StoreOut2(float* p, float x0, float x1) {
  *reinterpret_cast<float2*>(p) = make_float2(x0, x1);
}
__device__ __forceinline__ void StoreOut2(bf16* p, float x0, float x1) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x0, x1);
}
// The same at element `at` of an array whose type a flag picks at run time
// (bf16 or float32); the flag is uniform over a launch, so no divergence.
__device__ __forceinline__ void StoreOut2(void* base, bool bf16_out, int64_t at, float x0,
                                          float x1) {
  if (bf16_out) {
    StoreOut2(static_cast<bf16*>(base) + at, x0, x1);
  } else {
    StoreOut2(static_cast<float*>(base) + at, x0, x1);
  }
}

}  // namespace linearize::kernels::tiles
