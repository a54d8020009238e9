// Rotary position embedding in Hugging Face's rotate_half convention (the two
// halves of each head are the rotated pairs): y = x cos + rotate_half(x) sin.
// One entry point; CUDA tensors outside autograd take a single fused kernel
// (the LibTorch form costs five), everything else the LibTorch reference.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace linearize::kernels {

// x: [B, H, T, D], any strides with the last dimension contiguous (a view of
// a fused q/k/v projection is fine); cos, sin: [T, D] shared by the batch, or
// [B, 1, T, D] per row, in x's dtype. Returns a contiguous [B, H, T, D].
at::Tensor Rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// q [B, Hq, T, D] and k [B, Hk, T, D] rotated by the same tables, in one
// kernel launch on CUDA (a decode step rotates both in every layer).
std::pair<at::Tensor, at::Tensor> RotaryQk(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& cos, const at::Tensor& sin);

// The plain LibTorch reference (any device), used by tests and on CPU.
at::Tensor RotaryReference(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace linearize::kernels
