// The SwiGLU feed-forward block of Llama-family layers.
#pragma once

#include <ATen/core/Tensor.h>

namespace linearize::model {

// down(silu(gate(x)) * up(x)); weights [I, H], [I, H], [H, I].
at::Tensor SwiGlu(const at::Tensor& x, const at::Tensor& gate_proj, const at::Tensor& up_proj,
                  const at::Tensor& down_proj);

}  // namespace linearize::model
