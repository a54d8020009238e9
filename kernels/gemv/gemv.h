// Linear products with few rows (a decode step's batch of 1-4 tokens): CUDA
// tensors outside autograd take our weight-streaming kernel; everything
// else (more rows, CPU, autograd, odd alignment) takes LibTorch's
// at::linear / addmm, which is also the reference the kernel is tested
// against.
#pragma once

#include <ATen/core/Tensor.h>

namespace linearize::kernels {

// x w^T (+ bias): x [..., K], w [N, K], bias [N] or undefined -> [..., N].
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {});

// residual += x w^T in place: residual [..., N] contiguous, x [..., K] with
// the same leading sizes, w [N, K]. Not for tensors autograd records.
void AddLinear(const at::Tensor& residual, const at::Tensor& x, const at::Tensor& w);

// Linear(RmsNorm(x, norm_weight, eps), w, bias), the norm folded into the
// product for few rows on CUDA. x [..., K], norm_weight [K], w [N, K].
at::Tensor NormLinear(const at::Tensor& x, const at::Tensor& norm_weight, double eps,
                      const at::Tensor& w, const at::Tensor& bias = {});

// The start of a Llama MLP: silu(gate) * up of RmsNorm(x, norm_weight, eps)
// times gate_up^T. x [..., K], norm_weight [K], gate_up [2I, K] (gate rows
// then up rows) -> [..., I]. For few rows on CUDA one kernel (the norm and
// the gate fold into the product); otherwise RmsNorm, Linear and SiluMul.
at::Tensor NormGateUp(const at::Tensor& x, const at::Tensor& norm_weight, double eps,
                      const at::Tensor& gate_up);

// Switches the CUDA kernel off (cuBLAS everywhere) or back on, for
// benchmarks that compare the two in one run. On by default.
void SetGemvEnabled(bool enabled);

}  // namespace linearize::kernels
