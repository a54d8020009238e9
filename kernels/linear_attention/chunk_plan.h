// How the two-pass chunked kernels (forward and backward) cut a sequence into
// blocks. Plain host arithmetic, shared by their .cu files.
#pragma once

#include <algorithm>
#include <cstdint>

namespace linearize::kernels {

// Waves that `ctas` CTAs take when `slots` run at once.
inline double Waves(int64_t ctas, int64_t slots) { return double((ctas + slots - 1) / slots); }

// Chunks per sequence block for `chunks` chunks of each of `bh` sequences,
// when `slots` CTAs of pass 2 (and `states_slots` of pass 1; 0: as many) run
// at once. One block per sequence when the sequences fill the device; else
// blocks whose local states are computed in parallel (pass 1, about a third
// of pass 2's cost per chunk), then run from the earlier blocks' states
// (pass 2, each block folding them in as it starts). The cost is counted in
// chunk-times per wave, with a little fixed cost per pass.
inline int64_t PlanBlockChunks(int64_t chunks, int64_t bh, int64_t slots,
                               int64_t states_slots = 0) {
  slots = std::max<int64_t>(1, slots);
  states_slots = states_slots > 0 ? states_slots : slots;
  int64_t best_l = chunks;
  double best = Waves(bh, slots) * double(chunks);
  for (int64_t l = 1; l < chunks && bh <= 65535; ++l) {
    const int64_t nb = (chunks + l - 1) / l;
    if (nb > 65535) continue;
    const double cost = Waves(bh * nb, slots) * (double(l) + 0.5) +
                        Waves(bh * (nb - 1), states_slots) * (0.35 * double(l) + 0.5) + 1.0;
    if (cost < best) {
      best = cost;
      best_l = l;
    }
  }
  return std::max<int64_t>(1, best_l);
}

// Consecutive chunks per CTA for the window kernels that walk a sequence,
// keeping the previous chunk's rows in shared memory, for `chunks` chunks of
// each of `bh` sequences and `slots` CTAs at once: the fewest waves times a
// CTA's cost, a chunk after its first costing kNextChunk of it (it reads 256
// new rows where the first reads 384). At most 16, so short sequences still
// spread over the device. A model: at 32k (walks of 16) the window forward
// measured 0.91x the time of one chunk a CTA (session 23), not 0.7x.
inline int64_t PlanWalkChunks(int64_t chunks, int64_t bh, int64_t slots) {
  constexpr double kNextChunk = 0.7;
  slots = std::max<int64_t>(1, slots);
  int64_t best_l = 1;
  double best = Waves(bh * chunks, slots);
  for (int64_t l = 2; l <= std::min<int64_t>(16, chunks); ++l) {
    const double cost =
        Waves(bh * ((chunks + l - 1) / l), slots) * (1.0 + kNextChunk * double(l - 1));
    if (cost < best) {
      best = cost;
      best_l = l;
    }
  }
  return best_l;
}

}  // namespace linearize::kernels
