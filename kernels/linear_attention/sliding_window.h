// The softmax-window half of the hybrids (LoLCATs, Lizard), shared: which keys
// a query's window holds, the chunked band of window scores for the parallel
// form, and the K/V ring buffer of the recurrent form. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kernels/linear_attention/attention_common.h"

namespace linearize::kernels::detail {

// Query i (0-based) attends through softmax to keys j with Start(i) <= j <= i.
//  sliding: Start(i) = max(0, i - W + 1)            (the last W keys, i included)
//  terrace: Start(i) = max(0, (floor(i / W) - 1) W) (its own W-block and the one
//           before; blocks are aligned to position 0)
// Start(i) > i - Buffer() always, so a ring buffer of Buffer() keys holds every
// window, and in the chunked form the band [n C - Buffer() + 1, n C + C) holds
// every key that chunk n's queries can see.
struct WindowSpec {
  int64_t size = 64;
  bool terrace = false;

  int64_t Buffer() const { return terrace ? 2 * size : size; }
  int64_t Start(int64_t i) const;
  at::Tensor Start(const at::Tensor& i) const;  // elementwise on int64 positions
};

// Scores of each chunk's queries against its band of keys.
struct WindowBand {
  at::Tensor scores;  // [B, H, N, C, L] q.k * scale (all entries, mask not applied)
  at::Tensor mask;    // [N, C, L] bool: key u of the band is in query r's window
  at::Tensor values;  // [B, H, N, L, D]
  int64_t chunk = 0;  // C (= min(chunk, T))
};

// q, k, v: [B, H, T, D] (k, v already expanded to q's heads), T >= 1.
// Band row u of chunk n holds key position n C - (Buffer() - 1) + u
// (L = C + Buffer() - 1; positions < 0 are zero and masked out). Padded query
// rows (i >= T) see their own (zero) key, so every row has a finite max.
WindowBand BuildWindowBand(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const WindowSpec& spec, int64_t chunk, double scale);

// [B, H, N, C, X] -> [B, H, T, X] (drops the padded rows).
at::Tensor UnChunk(const at::Tensor& x, int64_t length);

// Ring buffer after consuming x [B, H, T, D]: position p sits in slot
// p % slots for p in [max(0, T - slots), T); other slots are zero.
at::Tensor RingFromSequence(const at::Tensor& x, int64_t slots);

// For the next position pos [B] (int64): the position each slot holds,
// pos - ((pos - s) mod slots), as [B, slots] (negative: never written).
at::Tensor RingSlotPositions(const at::Tensor& pos, int64_t slots);

// Writes x [B, H, 1, D] into slot pos % slots of ring [B, H, slots, D], in place.
void RingWrite(at::Tensor& ring, const at::Tensor& pos, const at::Tensor& x);

// Reads slots [B, E] (int64) of ring [B, H, S, D] -> [B, H, E, D].
at::Tensor RingGather(const at::Tensor& ring, const at::Tensor& slots);

// The one position every row of a batched state sits at (0 for an empty
// batch); fails naming `op` when rows differ. A prefill that continues a state
// runs one position for the whole batch (LlamaModel::Forward with a Memory).
int64_t UniformPosition(const char* op, const at::Tensor& position);

// The entries of positions [from, to) of ring [B, H, slots, D] in position
// order -> [B, H, to - from, D]; the ring must hold them (to - from <= slots,
// `to` the next position).
at::Tensor RingSequence(const at::Tensor& ring, int64_t from, int64_t to);

// A copy of ring [B, H, slots, D] after x [B, H, T, D] (positions pos ..
// pos + T - 1) was written into it token by token: only the last `slots`
// tokens survive, as with T RingWrite calls.
at::Tensor RingAppend(const at::Tensor& ring, int64_t pos, const at::Tensor& x);

// Window scores of one decode query q [B, Hq, 1, D] against the ring keys
// [B, Hkv, S, D] (grouped-query: no expansion) -> [B, Hq, 1, S], times scale.
at::Tensor RingScores(const at::Tensor& q, const at::Tensor& ring_k, double scale);

// Weighted values: weights [B, Hq, 1, S] times ring values [B, Hkv, S, D] -> [B, Hq, 1, D].
at::Tensor RingValues(const at::Tensor& weights, const at::Tensor& ring_v);

// The recurrent state both hybrids (LoLCATs, Lizard) keep: linear state kv
// [B, Hq, F, D] and normaliser k_sum [B, Hq, F] (one floating dtype), the
// window ring k_window/v_window [B, Hkv, slots, D], positions int64 [B].
// Checks all of it against q's dims and device; messages start with `op`.
void CheckHybridState(const char* op, const at::Tensor& kv, const at::Tensor& k_sum,
                      const at::Tensor& k_window, const at::Tensor& v_window,
                      const at::Tensor& position, const QkvDims& dims, int64_t feature_dim,
                      int64_t slots, const at::Tensor& q);

}  // namespace linearize::kernels::detail
