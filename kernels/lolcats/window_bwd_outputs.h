// The gradients the window backward kernels (lolcats_window_bwd_params.h)
// write, allocated in the dtype autograd will hand on: bfloat16 where the
// forward's input was bfloat16 and no sum over query heads follows (a
// float32 copy would only be cast), else float32. Shared by the LoLCATs
// window combine and Lizard's window branch. Compiled only with
// LINEARIZE_WITH_CUDA. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include "kernels/lolcats/lolcats_window_bwd_params.h"

namespace torch::autograd {
struct AutogradContext;
}  // namespace torch::autograd

namespace linearize::kernels::detail {

// Which input dtypes the forward saw: saved at the forward, read at the backward.
struct WindowInputTypes {
  bool q_bf16 = false;
  bool kv_bf16 = false;  // k and v both bfloat16

  static WindowInputTypes Of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
  void Save(torch::autograd::AutogradContext* ctx) const;
  static WindowInputTypes Load(torch::autograd::AutogradContext* ctx);
};

struct WindowQkvGrads {
  at::Tensor dq, dk, dv;  // [B, H, T, D] per query head (detail::SumToKvHeads for k, v)
};

// Allocates the gradients for q [B, H, T, D] (the saved bfloat16 copy) and
// points p.d_q / d_k / d_v and their dtype flags at them.
WindowQkvGrads AllocWindowGrads(LolcatsWindowBwdParams& p, const at::Tensor& q,
                                WindowInputTypes types);

}  // namespace linearize::kernels::detail
