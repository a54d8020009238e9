// The scan of the two-pass chunked kernels (.cu only): pass 1 leaves each
// sequence block's local state (the sum over its own chunks, relative to the
// block's entry) and the block's total decay; this turns them, in place, into
// the state each block starts from. Forward kernels enter a block from its
// start (the earlier blocks' sum), backward kernels from its end (the later
// blocks' sum), so kReverse scans the blocks from the last.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace linearize::kernels {

// states [BH][blocks][elems] float32, decays [BH][blocks]; grid (ceil(elems /
// blockDim.x), BH). The block scanned last has no local state to read (pass 1
// skips it). `initial` [BH][elems], optional: the state the first block
// scanned enters with (a prefill that continues a state); null: zero.
template <bool kReverse>
__global__ void ScanBlockStatesKernel(float* states, const float* decays, int64_t blocks,
                                      int elems, const float* initial = nullptr) {
  const int64_t bh = blockIdx.y;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= elems) return;
  float run = initial != nullptr ? initial[bh * elems + e] : 0.f;
  for (int64_t step = 0; step < blocks; ++step) {
    const int64_t k = kReverse ? blocks - 1 - step : step;
    const int64_t slot = bh * blocks + k;
    float* x = states + slot * elems + e;
    const float u = step + 1 < blocks ? *x : 0.f;
    *x = run;
    run = decays[slot] * run + u;
  }
}

}  // namespace linearize::kernels
