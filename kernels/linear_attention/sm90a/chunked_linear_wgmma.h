// The chunked causal linear attention's output on Hopper's warpgroup
// products (chunked_linear_wgmma_cuda.cu, sm_90a), beside the mma.sync
// kernel (chunked_linear_cuda.cu); chunked_linear_dispatch.cc picks one. It
// takes ChunkedLinearParams (plan with PlanChunkedLinear: long sequences with
// few (b, h) take the two-pass split, pass 1 on wgmma too) and
// covers bf16 with F = D = 128: features, or raw q / k with the Hedgehog maps
// fused (Fh = 64); an initial and a final state; keys and values delayed
// (LoLCATs' linear part); log gates (no delay); LoLCATs' 64-token window
// fused (fused maps, delay 64), y then the hybrid's output; any of y, num
// (float32 or bf16) and den (with the window: the linear terms, and y's
// denominator); ungated fused maps also write their features (LoLCATs'
// training forward). The backward's d_q runs on the same two
// warpgroups (the forward's state beside d_q's rows); its d_k and d_v on
// three (the chunks in reverse, the gradient state beside the d_k and the
// d_v rows).
#pragma once

#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/chunked_linear_params.h"

namespace linearize::kernels {

bool ChunkedLinearWgmmaSupported(const ChunkedLinearParams& params);

// Launches; returns the launch error string, or nullptr on success.
const char* LaunchChunkedLinearWgmma(const ChunkedLinearParams& params);

// The backward's d_q and q_dot_dq alone (the mma.sync kernels' DqKernel,
// chunked_linear_bwd_cuda.cu, with skip_dq set there): bf16 F = D = 128,
// d_num in bf16 or the normalised form, and with more than one block the
// forward's block states (fwd_block_states). Plan with PlanChunkedLinearBwd;
// the normalised form's d_den must be filled first (LaunchChunkedLinearBwd
// does, so launch this after it on the same stream).
bool ChunkedLinearDqWgmmaSupported(const ChunkedLinearBwdParams& params);
const char* LaunchChunkedLinearDqWgmma(const ChunkedLinearBwdParams& params);

// The backward's d_k, d_v and k_dot_dk alone (the mma.sync DkvKernel, with
// skip_dkv set there), under the same conditions, with a reverse pass 1 of
// its own when blocks > 1; launch this after LaunchChunkedLinearBwd (which
// fills the normalised form's d_den) on the same stream too.
bool ChunkedLinearDkvWgmmaSupported(const ChunkedLinearBwdParams& params);
const char* LaunchChunkedLinearDkvWgmma(const ChunkedLinearBwdParams& params);

}  // namespace linearize::kernels
