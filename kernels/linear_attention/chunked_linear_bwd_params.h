// The plain struct the chunked linear attention backward kernels see
// (kernels/linear_attention/chunked_linear_bwd_cuda.cu): pointers, sizes, the
// stream; no LibTorch types. Given the forward of ChunkedLinearParams
// (num_i = sum_{j<=i} w_ij (q_i . k_j) v_j, den_i = sum_{j<=i} w_ij (q_i . k_j),
// w_ij = exp(sum_{j<s<=i} log_gamma_s), 1 ungated) and the gradients of num
// and den, they give, per query head h,
//   d_q_i = sum_{j<=i} w_ij (d_num_i . v_j + d_den_i) k_j
//   d_k_j = sum_{i>=j} w_ij (d_num_i . v_j + d_den_i) q_i
//   d_v_j = sum_{i>=j} w_ij (q_i . k_j) d_num_i
// (the key/value heads' gradients are the sums over their query heads; the
// gates' gradient follows from q . d_q - k . d_k, see chunked_linear_grad.h).
#pragma once

#include <cstdint>

namespace linearize::kernels {

struct ChunkedLinearBwdParams {
  // Inputs, contiguous: features and values in bfloat16, the rest float32.
  const void* phi_q = nullptr;       // [B, H, T, F]
  const void* phi_k = nullptr;       // [B, Hk, T, F], query head h reads h / (H / Hk)
  const void* v = nullptr;           // [B, Hv, T, D]
  const float* log_gamma = nullptr;  // optional [B, Hg, T], <= 0 (-inf allowed); Hg = 0 without
  const void* d_num = nullptr;       // [B, H, T, D], float32 or (d_num_bf16) bfloat16
  bool d_num_bf16 = false;
  float* d_den = nullptr;            // [B, H, T]
  // Or the normalised form (d_num null): the forward's output was
  // y = num / z (z = den + eps); given bf16 dy and float32 num [B, H, T, D]
  // and z [B, H, T], a first kernel fills d_den (then scratch) with
  // -(dy . num) / z^2, and the kernels form d_num = dy / z as they load each
  // chunk, so no float32 d_num passes through device memory.
  const void* dy = nullptr;
  const float* num = nullptr;
  const float* z = nullptr;
  int64_t batch = 0, heads = 0, k_heads = 0, v_heads = 0, g_heads = 0;
  int64_t length = 0;       // T >= 1
  // Keys and values of position t are those of t - key_delay (zero before 0),
  // as the forward's key_delay; ungated only. d_k and d_v are then the
  // gradients of the undelayed phi_k and v: rows T - key_delay .. T - 1,
  // which no query reads, are not written (the caller zeroes them).
  int64_t key_delay = 0;
  int64_t feature_dim = 0;  // F: 64 or 128
  int64_t head_dim = 0;     // D: 64 or 128

  // Outputs, per query head, every element written (but the delayed tail
  // above); float32, or bf16 where
  // the flag says (the caller's inputs were bf16 and nothing more is summed
  // into them in float32):
  void* d_q = nullptr;  // [B, H, T, F]
  void* d_k = nullptr;  // [B, H, T, F]
  void* d_v = nullptr;  // [B, H, T, D]
  bool d_q_bf16 = false, d_k_bf16 = false, d_v_bf16 = false;
  // Optional bf16 [B, H, T, D], added into d_v as it is stored (another op's
  // gradient of the same v, e.g. a window's, so no separate addition runs).
  // Its delayed tail rows are the caller's to copy.
  const void* d_v_add = nullptr;
  // Optional, float32 [B, H, T], zeroed by the caller: the kernels add (the
  // mma.sync ones) or store (the wgmma ones) each row's phi_q_i . d_q_i and
  // phi_k_j . d_k_j (per query head, from the unrounded gradients), from
  // which the caller forms the gates' gradient.
  float* q_dot_dq = nullptr;
  float* k_dot_dk = nullptr;
  // Hedgehog features (phi = [p, n], softmaxes of the logits l and -l, F / 2
  // columns each): d_q and d_k hold the logits' gradients instead,
  // [B, H, T, F / 2], dl = p (dp - <dp, p>) - n (dn - <dn, n>) from
  // d_phi = [dp, dn] before any rounding, so the maps' backward reads half
  // the bytes and no phi. The wgmma kernels only (skip_dq and skip_dkv);
  // gated too, the dots above then from the unrounded d_phi.
  bool hedgehog_logits = false;

  int sm_count = 132;
  // Optional: the forward's two-pass workspace (chunked_linear_params.h:
  // each block's local state [B * H][blocks][F][D + 8], then the blocks'
  // decays [B * H][blocks]) with the chunks per block it used, fwd_block_chunks.
  // The backward then cuts the sequence the same way and starts d_q's blocks
  // from those states instead of computing them again.
  const float* fwd_block_states = nullptr;
  int64_t fwd_block_chunks = 0;
  // Two-pass split as in the forward (PlanChunkedLinearBwd sets blocks /
  // block_chunks; ChunkedLinearBwdWorkspaceBytes bytes of scratch).
  void* workspace = nullptr;
  int64_t blocks = 1;
  int64_t block_chunks = 0;
  void* stream = nullptr;  // cudaStream_t
  // d_q and q_dot_dq (skip_dq), or d_k, d_v and k_dot_dk (skip_dkv), come
  // from other kernels (sm90a/chunked_linear_wgmma.h): LaunchChunkedLinearBwd
  // leaves them out, with the pass 1 only they need (the forward states for
  // d_q, the reverse ones for d_k / d_v: the wgmma d_k / d_v launch runs its
  // own into the same workspace).
  bool skip_dq = false, skip_dkv = false;
};

// Whether the kernels cover these sizes (pointers are checked at launch).
bool ChunkedLinearBwdSupported(const ChunkedLinearBwdParams& params);
void PlanChunkedLinearBwd(ChunkedLinearBwdParams& params);
int64_t ChunkedLinearBwdWorkspaceBytes(const ChunkedLinearBwdParams& params);
// Launches; returns the launch error string, or nullptr on success.
const char* LaunchChunkedLinearBwd(const ChunkedLinearBwdParams& params);

}  // namespace linearize::kernels
