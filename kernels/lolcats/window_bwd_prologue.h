// ATen side of the window backward's prologue (window_bwd_prologue_cuda.cu),
// shared by the LoLCATs window combine and Lizard's window branch. Compiled
// only with LINEARIZE_WITH_CUDA. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

namespace linearize::kernels::detail {

struct WindowBwdGrads {
  at::Tensor d_num_bf16;  // dN = dy / Z [B, H, T, D], what the window backward reads
  at::Tensor d_num;       // the same in lin_num's dtype (with the linear terms; else undefined)
  at::Tensor d_den;       // dZ = -(dy . y) / Z [B, H, T], float32
  at::Tensor dc;          // dN . lin_num + dZ lin_den [B, H, T] (with the linear terms)
  at::Tensor dy_dot_y;    // dy . y [B, H, T] float32, unscaled (with alpha)
};

// From dy [B, H, T, D] (bfloat16 or float32; other dtypes are cast to
// float32), the forward's y (bfloat16) and Z (float32 [B, H, T]), and for
// LoLCATs its lin_num [B, H, T, D] (float32 or bfloat16) and lin_den [B, H, T] (undefined
// for Lizard). D must be 64 or 128, as the window kernels need.
// With alpha (float32 [H], Lizard's weight of the window branch y in the
// output): dy is read as alpha_h dy, and dy_dot_y is returned for alpha's
// gradient.
WindowBwdGrads WindowBwdPrologueCuda(const at::Tensor& dy, const at::Tensor& y, const at::Tensor& z,
                                     const at::Tensor& lin_num, const at::Tensor& lin_den,
                                     const at::Tensor& alpha = {});

}  // namespace linearize::kernels::detail
