#include "common/model/mlp.h"

#include <ATen/ATen.h>

namespace linearize::model {

at::Tensor SwiGlu(const at::Tensor& x, const at::Tensor& gate_proj, const at::Tensor& up_proj,
                  const at::Tensor& down_proj) {
  return at::linear(at::silu(at::linear(x, gate_proj)) * at::linear(x, up_proj), down_proj);
}

}  // namespace linearize::model
