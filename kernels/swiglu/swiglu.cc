// The one SiluMul entry point: checks arguments, then runs the LibTorch
// reference, or the CUDA kernel for CUDA tensors outside autograd.
#include "kernels/swiglu/swiglu.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#ifdef LINEARIZE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/swiglu/swiglu_params.h"
#endif

namespace linearize::kernels {

at::Tensor SiluMulReference(const at::Tensor& gate_up) {
  const int64_t inner = gate_up.size(-1) / 2;
  return at::silu(gate_up.narrow(-1, 0, inner)) * gate_up.narrow(-1, inner, inner);
}

at::Tensor SiluMul(const at::Tensor& gate_up) {
  TORCH_CHECK(gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0,
              "SiluMul: gate_up must be [..., 2I] (gate then up), got ", gate_up.sizes());
#ifdef LINEARIZE_WITH_CUDA
  const at::ScalarType type = gate_up.scalar_type();
  const bool needs_grad = at::GradMode::is_enabled() && gate_up.requires_grad();
  if (gate_up.is_cuda() && !needs_grad &&
      (type == at::kFloat || type == at::kHalf || type == at::kBFloat16)) {
    const c10::cuda::CUDAGuard guard(gate_up.device());
    const at::Tensor in = gate_up.stride(-1) == 1 ? gate_up : gate_up.contiguous();
    const at::Tensor rows = in.reshape({-1, in.size(-1)});  // a view when rows are evenly strided
    std::vector<int64_t> out_shape = gate_up.sizes().vec();
    out_shape.back() /= 2;
    at::Tensor y = at::empty(out_shape, gate_up.options());
    SiluMulParams p;
    p.gate_up = rows.data_ptr();
    p.row_stride = rows.stride(0);
    p.y = y.data_ptr();
    p.rows = rows.size(0);
    p.inner = rows.size(1) / 2;
    p.type = type == at::kFloat  ? ElementType::kF32
             : type == at::kHalf ? ElementType::kF16
                                 : ElementType::kBF16;
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchSiluMul(p);
    TORCH_CHECK(err == nullptr, "SiluMul: CUDA launch failed: ", err);
    return y;
  }
#endif
  return SiluMulReference(gate_up);
}

}  // namespace linearize::kernels
