// SwiGLU's gate: silu(gate) * up, for the output of the fused gate/up
// projection. One entry point; CUDA tensors outside autograd take one fused
// kernel (the LibTorch form costs two and a round trip of the gate through
// memory), everything else the LibTorch reference.
#pragma once

#include <ATen/core/Tensor.h>

namespace linearize::kernels {

// gate_up: [..., 2I] laid out [gate | up], last dimension contiguous;
// float32, float16 or bfloat16. Returns silu(gate) * up, [..., I] contiguous.
at::Tensor SiluMul(const at::Tensor& gate_up);

// The plain LibTorch reference (any device), used by tests and on CPU.
at::Tensor SiluMulReference(const at::Tensor& gate_up);

}  // namespace linearize::kernels
