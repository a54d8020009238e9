// ATen side of the chunked linear attention CUDA kernel
// (chunked_linear_cuda.cu): checks, allocation, launch on the current
// stream. Compiled only with LINEARIZE_WITH_CUDA. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

#include "kernels/linear_attention/chunked_linear.h"

namespace linearize::kernels::detail {

struct CudaLinearInputs {
  // [B, H, T, F] features, or with fused maps (q_weight defined) the raw q [B, H, T, D].
  at::Tensor phi_q;
  // [B, Hk, T, F], H % Hk == 0 (query head h reads h / (H / Hk)); raw k when fused.
  at::Tensor phi_k;
  at::Tensor v;          // [B, Hv, T, D], H % Hv == 0
  at::Tensor log_gamma;  // optional [B, Hg, T], <= 0
  // Fused Hedgehog maps (bfloat16 only): q_weight [H, D, Fh], k_weight [Hw, D, Fh]
  // with Hw = H or Hk; F = 2 Fh. Undefined: phi_q / phi_k are features.
  at::Tensor q_weight, k_weight;
  int64_t key_delay = 0;  // keys/values of position t are those of t - key_delay
  // Optional (both or neither): the state before the first token, kv0
  // [B, H, F, D] and k_sum0 [B, H, F] (any float dtype), as
  // ChunkedCausalLinear's; the outputs and the final state carry it on.
  at::Tensor kv0, k_sum0;
  double eps = 1e-6;
  bool want_y = true;        // y = num / (den + eps) in phi_q's dtype
  bool want_num_den = false;  // float32 num [B, H, T, D], den [B, H, T]
  // num in phi_q's dtype instead (bf16 for bf16 inputs): half the bytes, for
  // a consumer that reads it once and rounds its own output to that dtype.
  bool num_in_input_dtype = false;
  bool want_state = false;    // float32 kv [B, H, F, D], k_sum [B, H, F]
  // Optional [H] float32, with fused maps and key_delay = 64: LoLCATs' window
  // fused into the kernel under the shared normaliser, g_h = sigmoid(window
  // logit) (ChunkedLinearParams::window_gate); y is then the hybrid's
  // output, num / den the linear terms before the window adds in.
  at::Tensor window_gate;
  bool want_y_den = false;  // with the window: y's denominator [B, H, T] float32
  // With fused maps, ungated, on the wgmma kernel (else nullopt): the
  // features it computed, phi_q [B, H, T, F] and phi_k [B, Hk, T, F]
  // (bfloat16, the key map per key head; rows t >= T - key_delay of phi_k,
  // which reach no query, zero).
  bool want_features = false;
  // Keep the two-pass split's block states (the backward starts from them
  // instead of computing them again; chunked_linear_bwd_params.h).
  bool keep_block_states = false;
};

struct CudaLinearOutputs {
  at::Tensor y, num, den, kv, k_sum;
  at::Tensor y_den, phi_q, phi_k;  // want_y_den, want_features
  // With fused maps: their weights as the kernel read them, W^T [H or Hw,
  // Fh, D] in phi_q's dtype (a training backward reads them too).
  at::Tensor q_weight_t, k_weight_t;
  // With keep_block_states and more than one block: pass 1's workspace, and
  // the chunks per block it was cut into. Else undefined and 0.
  at::Tensor block_states;
  int64_t block_chunks = 0;
};

// Runs the kernel, or returns nullopt when it does not cover the inputs
// (not CUDA, dtype other than float32/bfloat16, F or D not 64/128, gradients
// needed, mixed dtypes, kernels switched off). T must be >= 1.
std::optional<CudaLinearOutputs> ChunkedCausalLinearCuda(const CudaLinearInputs& in);

// Whether the wgmma kernels (sm90a/chunked_linear_wgmma.h) may run on
// `device`: an sm_90 device, unless LINEARIZE_WGMMA=0 keeps the mma.sync
// kernels everywhere.
bool WgmmaKernelsApply(const at::Device& device);

// ChunkedCausalLinear's drop-in on the GPU (num, den, and the state when
// want_state), or nullopt as above.
std::optional<LinearTerms> ChunkedCausalLinearTermsCuda(const at::Tensor& phi_q,
                                                        const at::Tensor& phi_k,
                                                        const at::Tensor& v,
                                                        const at::Tensor& log_gamma,
                                                        bool want_state,
                                                        const at::Tensor& kv0 = {},
                                                        const at::Tensor& k_sum0 = {});

}  // namespace linearize::kernels::detail
