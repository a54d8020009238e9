// The gates' gradient of the chunked gated linear attention's backward.
// With B the cumsum of log_gamma the weights are w_ij = exp(B_i - B_j), so
// dB_t = phi_q_t . d_phi_q_t - phi_k_t . d_phi_k_t (the d_q and d_k kernels'
// per-row dots), and log_gamma_s enters every B_t with t >= s:
//   d_log_gamma[b, g, s] = sum_{t >= s} sum_{h in g} (q_dot[b, h, t] - k_dot[b, h, t])
// where gate head g is read by the heads / g_heads consecutive query heads
// h = g * (heads / g_heads) ... One pass of segment sums, then each segment's
// suffix sums from its own rows and the later segments' sums: the suffix
// sum of a few long rows (B G of them) spread over B G T / 1024 CTAs.
// Sees no ATen (chunked_linear_grad.cc allocates and launches).
#pragma once

#include <cstdint>

namespace linearize::kernels {

struct GateGradParams {
  const float* q_dot = nullptr;   // [B, H, T]
  const float* k_dot = nullptr;   // [B, H, T]
  float* d_log_gamma = nullptr;   // [B, G, T]
  float* segment_sums = nullptr;  // scratch, [B, G, GateGradSegments(T)]
  int64_t batch = 0, heads = 0, g_heads = 0, length = 0;
  void* stream = nullptr;  // cudaStream_t
};

// Segments of a row (the scratch's last dimension).
int64_t GateGradSegments(int64_t length);

// Launches the two kernels; the launch error string, or nullptr. Refuses
// (naming it) sizes it does not cover: g_heads not dividing heads, empty
// rows, more than 2^31 - 1 rows (B G) or 65535 segments (T > 67M).
const char* LaunchGateGrad(const GateGradParams& p);

}  // namespace linearize::kernels
