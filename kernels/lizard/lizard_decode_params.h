// The plain struct the Lizard decode CUDA kernels see (lizard_decode_cuda.cu):
// one token for each of B rows (sessions), rows at their own positions,
// sliding window of W slots; no LibTorch types. Per (row, head), as
// lizard::DecodeStep:
//   S = gamma S + phi(k) v^T, z = gamma z + phi(k)  (gamma = exp(log_gamma))
//   y = phi(q) S / (phi(q) . z + eps)
//     + alpha sum_win exp(s - c) v / (sum_win exp(s - c) + sum_m exp(l_m - c))
// with k_window, v going to ring slot pos % W first and the window scores s
// over the slots holding positions max(0, pos - W + 1)..pos; position += 1.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct LizardDecodeParams {
  float* kv = nullptr;                 // [B, H, F, D] float32, updated in place
  float* k_sum = nullptr;              // [B, H, F] float32, updated in place (by the second launch)
  float* new_features = nullptr;       // [B, H, F] float32 scratch: phi(k) of the new key
  void* k_window = nullptr;            // [B, Hkv, W, D] element type `type`, updated in place
  void* v_window = nullptr;            // [B, Hkv, W, D]
  int64_t* position = nullptr;         // [B], advanced by one
  const void* q = nullptr;             // [B, H, D] contiguous: the gated branch's query
  const void* k = nullptr;             // [B, Hkv, D]: its key
  const void* v = nullptr;             // [B, Hkv, D]
  const void* q_window = nullptr;      // [B, H, D]: the window branch's query (RoPE applied)
  const void* k_window_new = nullptr;  // [B, Hkv, D]: its key, written to the ring
  const float* log_gamma = nullptr;    // [B, Hg] float32, Hg = H or Hkv
  int64_t gamma_heads = 0;
  const void* q_weight = nullptr;  // hedgehog [H, D, Fh]
  const void* k_weight = nullptr;  // hedgehog [Hw, D, Fh] (Hw = H or Hkv)
  int64_t k_weight_heads = 0;
  ElementType weight_type = ElementType::kF32;  // of both weights: kF32 or kBF16
  const float* meta_logits = nullptr;           // [H, M] float32 sink logits
  int64_t meta = 0;                             // M, 0..kMaxMeta
  const float* alpha = nullptr;                 // [H] float32 weight of the window branch
  void* y = nullptr;                            // [B, H, D], element type `type`
  int64_t batch = 0, heads = 0, kv_heads = 0;
  int64_t head_dim = 0;     // D: multiple of 4, <= 128
  int64_t feature_dim = 0;  // F = 2 Fh <= 256
  int64_t window = 128;     // W slots, 1..1024
  float scale = 1.f;        // 1 / sqrt(D)
  float eps = 1e-6f;
  int64_t column_splits = 1;              // CTAs per (row, head): 1, 2 or 4, D % (4 splits) == 0
  ElementType type = ElementType::kBF16;  // kF32 or kBF16
  void* stream = nullptr;
};

bool LizardDecodeSupported(const LizardDecodeParams& params);

// Launches the step (attend, then the ring write, z update and position
// advance); returns the launch error string, or nullptr on success.
const char* LaunchLizardDecode(const LizardDecodeParams& params);

}  // namespace linearize::kernels
