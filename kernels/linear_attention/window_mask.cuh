// Sliding-window arithmetic the window kernels share, per element of a score
// tile, in 32-bit integers and the exp2 domain (.cu only):
// - a query at position i sees the key at position pos when
//   0 <= i - pos < min(w, i + 1) (the key is in the window and at or after
//   position 0): one unsigned compare of their int32 distance, which a band
//   knows without the 64-bit positions;
// - a softmax weight g exp(s * scale - c) is exp2(s * scale log2(e) - b),
//   b = c log2(e) - log2(g): one FFMA and one MUFU.EX2 per element.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace linearize::kernels::window {

constexpr float kLog2e = 1.4426950408889634f;

// Which keys a query row sees, by distance: Sees(d) for d = i - pos.
struct RowLimit {
  unsigned limit;  // min(w, i + 1); 0 for a row that sees nothing
  __device__ RowLimit(int64_t i, int w)
      : limit(i < 0 ? 0u : static_cast<unsigned>(i + 1 < w ? i + 1 : w)) {}
  __device__ bool Sees(int d) const { return static_cast<unsigned>(d) < limit; }
};

// The exp2-domain offset b of a row whose scaled max is c (natural log
// domain) and gate g > 0: weights exp2(fma(s, scale * kLog2e, -b)). A row
// that sees no key (c = -inf) gets b = 0, so its weights stay finite.
__device__ __forceinline__ float Exp2Offset(float c, float gate = 1.f) {
  return c == -INFINITY ? 0.f : c * kLog2e - __log2f(gate);
}

// exp2(x), with -inf -> 0 (MUFU.EX2 under fast math).
__device__ __forceinline__ float Exp2(float x) { return exp2f(x); }

// The 8-key score tiles a warp of 16 query rows (the chunk's rows r0 ..
// r0 + 15) holds, in a band of kBand keys of which kBefore come before the
// 64-row chunk (band key u is at distance kBefore + r - u from row r), for
// a window w <= kBefore. kRelative: the kBefore / 8 + 2 tiles from the
// warp's first row on, the only ones its rows see; else the whole band's,
// for callers that need each tile's place at compile time. Tile j holds
// band keys 8 (first + j) .. + 7, and the rows see tiles lo .. hi
// (relative: the same for every warp).
template <int kBefore, int kBand, bool kRelative>
struct WarpBandTiles {
  static constexpr int kCount = kRelative ? kBefore / 8 + 2 : kBand / 8;
  int first, lo, hi;
  __device__ WarpBandTiles(int r0, int w)
      : first(kRelative ? r0 / 8 : 0),
        lo(kRelative ? (kBefore + 1 - w) / 8 : max(0, (r0 + kBefore + 1 - w) / 8)),
        hi(kRelative ? kCount - 1 : (r0 + kBefore + 15) / 8) {}
  // Whether the rows see tile pair jp (tiles 2 jp and 2 jp + 1).
  __device__ bool PairSeen(int jp) const { return 2 * jp + 1 >= lo && 2 * jp <= hi; }
};

}  // namespace linearize::kernels::window
