// The plain struct the chunked causal linear attention CUDA kernel sees
// (kernels/linear_attention/chunked_linear_cuda.cu): pointers, sizes, the
// stream; no LibTorch types. The math is detail::ChunkedCausalLinear's
// (chunked_linear.h): per query i,
//   num_i = sum_{j<=i} w_ij (phi_q_i . phi_k_j) v_j,  den_i = sum_{j<=i} w_ij (phi_q_i . phi_k_j)
// with w_ij = exp(sum_{j<s<=i} log_gamma_s) (1 without gates), and the state
// after the last token. Optionally keys and values are delayed: position t
// sees the key/value of t - key_delay (zero before 0), which turns the
// kernel into LoLCATs' linear part (keys older than the window).
#pragma once

#include <cstdint>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels {

struct ChunkedLinearParams {
  // Inputs, contiguous, element type `type` (kF32 or kBF16):
  const void* phi_q = nullptr;  // [B, H, T, F]
  const void* phi_k = nullptr;  // [B, Hk, T, F], query head h reads h / (H / Hk)
  const void* v = nullptr;      // [B, Hv, T, D], query head h reads h / (H / Hv)
  const float* log_gamma = nullptr;  // optional [B, Hg, T] float32, <= 0 (-inf allowed)
  int64_t batch = 0, heads = 0, k_heads = 0, v_heads = 0, g_heads = 0;
  int64_t length = 0;       // T >= 1
  int64_t feature_dim = 0;  // F: 64 or 128
  int64_t head_dim = 0;     // D: 64 or 128
  int64_t key_delay = 0;    // >= 0
  // Optional: the state before the first token (a prefill that continues a
  // sequence), float32 [B, H, F, D + 8]: kv0 in columns < D, k_sum0 in
  // column D, zeros after (the kernel's own state layout, which
  // ChunkedLinearInitialStateCols gives). Null: the empty state.
  const float* initial_state = nullptr;

  // Fused Hedgehog maps (bf16 only): when q_weight_t is set, phi_q / phi_k
  // hold the raw q [B, H, T, D] / k [B, Hk, T, D] and the kernel computes
  // phi(x) = [softmax(x W), softmax(-x W)] (F = 2 Fh) itself, in float32, so
  // the features never touch device memory.
  const void* q_weight_t = nullptr;  // [H, Fh, D] (W transposed), element type `type`
  const void* k_weight_t = nullptr;  // [Hw, Fh, D]; Hw = H (per query head) or Hk
  int64_t k_weight_heads = 0;

  // Optional, with fused maps and key_delay = 64: LoLCATs' sliding window of
  // W = 64 keys fused in, sharing the normaliser with the linear part (keys
  // older than the window, the delayed keys):
  //   y_i = (g_h sum_win exp(s_ij - c_i) v_j + num_i) / (g_h sum_win exp(s_ij - c_i) + den_i)
  // over window keys j in (i - 64, i], s_ij = q_i . k_j * window_scale, c_i
  // their max (eps is not added). num / den are then the linear terms alone,
  // before the window adds in (what the training backward reads).
  const float* window_gate = nullptr;  // [H] float32 g_h = sigmoid(window logit), or null
  float window_scale = 0.f;            // 1 / sqrt(D)
  float* y_den = nullptr;              // optional, with the window: y's denominator [B, H, T]

  // Optional training outputs of the fused maps (bf16, ungated, the wgmma
  // kernel only): the features the kernel computed, phi_q [B, H, T, F] and
  // phi_k [B, Hk, T, F] (the key map per key head: k_weight_heads = Hk).
  // phi_k's rows t >= T - key_delay reach no query and are not written.
  void* phi_q_out = nullptr;
  void* phi_k_out = nullptr;

  // Outputs (any subset may be null):
  void* y = nullptr;       // [B, H, T, D] num / (den + eps), element type `type`
  void* num = nullptr;     // [B, H, T, D], float32 or (num_bf16) bfloat16
  bool num_bf16 = false;
  float* den = nullptr;    // [B, H, T]
  float* kv = nullptr;     // [B, H, F, D] state after the last token
  float* k_sum = nullptr;  // [B, H, F]
  float eps = 1e-6f;

  ElementType type = ElementType::kBF16;
  int sm_count = 132;  // multiprocessors of the device (sizes the two-pass split)
  // Scratch for the two-pass scheme, ChunkedLinearWorkspaceBytes(*this) bytes
  // (16-byte aligned); set `blocks` with PlanChunkedLinear first. After the
  // launch it holds pass 1's results: the local state of every block but the
  // last, float32 [B * H][blocks][F][D + 8] (kv | k_sum | zeros, relative to
  // the block's entry), then each block's total decay [B * H][blocks].
  void* workspace = nullptr;
  int64_t blocks = 1;          // sequence blocks per (b, h), from PlanChunkedLinear
  int64_t block_chunks = 0;    // 64-token chunks per block
  void* stream = nullptr;      // cudaStream_t of the caller's current stream
};

// Columns of initial_state's rows: D + 8.
constexpr int64_t ChunkedLinearInitialStateCols(int64_t head_dim) { return head_dim + 8; }

// Whether the kernel covers these sizes and element type.
bool ChunkedLinearSupported(const ChunkedLinearParams& params);

// Chooses blocks / block_chunks (one block per (b, h) when B * H fills the
// device, else the sequence is cut into blocks: their local states are
// computed in parallel, then each block runs from the earlier ones' sum).
void PlanChunkedLinear(ChunkedLinearParams& params);

// Scratch bytes needed for the plan in `params` (0 for a single block).
int64_t ChunkedLinearWorkspaceBytes(const ChunkedLinearParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchChunkedLinear(const ChunkedLinearParams& params);

}  // namespace linearize::kernels
