// The plain struct the LoLCATs decode CUDA kernels see
// (lolcats_decode_cuda.cu): one token for each of B rows (sessions), rows at
// their own positions, sliding window of W slots; no LibTorch types. Per
// (row, head), as lolcats::DecodeStep: the key at position pos - W (if any)
// leaves the ring into S, z; k, v go to slot pos % W; then
//   y = (g sum_win exp(s - c) v + phi(q) S) / (g sum_win exp(s - c) + phi(q) . z)
// over the slots holding positions max(0, pos - W + 1)..pos; position += 1.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct LolcatsDecodeParams {
  float* kv = nullptr;       // [B, H, F, D] float32, updated in place
  float* k_sum = nullptr;    // [B, H, F] float32, updated in place (by the second launch)
  float* evicted_features = nullptr;  // [B, H, F] float32 scratch: phi(k) of the key leaving
  void* k_window = nullptr;  // [B, Hkv, W, D] element type `type`, updated in place
  void* v_window = nullptr;  // [B, Hkv, W, D]
  int64_t* position = nullptr;  // [B], advanced by one
  const void* q = nullptr;      // [B, H, D] contiguous, element type `type`
  const void* k = nullptr;      // [B, Hkv, D]; query head h reads h / (H / Hkv)
  const void* v = nullptr;      // [B, Hkv, D]
  const void* q_weight = nullptr;  // hedgehog [H, D, Fh], null for elu+1
  const void* k_weight = nullptr;  // hedgehog [Hw, D, Fh] (Hw = H or Hkv), null for elu+1
  int64_t k_weight_heads = 0;
  ElementType weight_type = ElementType::kF32;  // of both weights: kF32 or kBF16
  const void* window_logit = nullptr;  // [H] raw w; g = sigmoid(w)
  ElementType logit_type = ElementType::kF32;  // kF32 or kBF16 (read as stored: no cast per step)
  void* y = nullptr;            // [B, H, D], element type `type`
  int64_t batch = 0, heads = 0, kv_heads = 0;
  int64_t head_dim = 0;     // D: multiple of 4, <= 128
  int64_t feature_dim = 0;  // F: 2 Fh (<= 256) or D for elu+1
  int64_t window = 64;      // W slots, 1..1024
  float scale = 1.f;        // 1 / sqrt(D)
  // CTAs per (row, head), each owning D / splits output columns: 1, 2 or 4
  // with D % (4 splits) == 0 (more CTAs fill the GPU at small batch).
  int64_t column_splits = 1;
  ElementType type = ElementType::kBF16;  // kF32 or kBF16
  void* stream = nullptr;
};

bool LolcatsDecodeSupported(const LolcatsDecodeParams& params);

// Launches the step (attend, then the ring write and position advance);
// returns the launch error string, or nullptr on success.
const char* LaunchLolcatsDecode(const LolcatsDecodeParams& params);

}  // namespace linearize::kernels
