#include "kernels/lolcats/window_bwd_prologue.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>

#include <cstdint>

#include "kernels/lolcats/window_bwd_prologue_params.h"

namespace linearize::kernels::detail {
namespace {

// Contiguous and 16-byte aligned, as the kernel's vector loads need (a copy
// only for a view that starts mid-row).
at::Tensor AlignedContiguous(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 == 0 ? c : c.clone();
}

}  // namespace

WindowBwdGrads WindowBwdPrologueCuda(const at::Tensor& dy, const at::Tensor& y, const at::Tensor& z,
                                     const at::Tensor& lin_num, const at::Tensor& lin_den,
                                     const at::Tensor& alpha) {
  const bool f32 = dy.scalar_type() != at::kBFloat16;
  const at::Tensor g = AlignedContiguous(f32 ? dy.to(at::kFloat) : dy);
  const at::Tensor yc = AlignedContiguous(y), zc = z.contiguous();
  const bool linear = lin_num.defined();
  const at::Tensor ln = linear ? AlignedContiguous(lin_num) : at::Tensor();
  const at::Tensor ld = linear ? lin_den.contiguous() : at::Tensor();
  WindowBwdGrads out;
  out.d_num_bf16 = at::empty(yc.sizes(), yc.options());
  out.d_den = at::empty(zc.sizes(), zc.options());
  const bool lin_bf16 = linear && ln.scalar_type() == at::kBFloat16;
  if (linear) {
    // bf16 linear terms take the bf16 dN as their gradient; float32 ones a float32 copy.
    out.d_num = lin_bf16 ? out.d_num_bf16 : at::empty(yc.sizes(), zc.options());
    out.dc = at::empty(zc.sizes(), zc.options());
  }
  WindowBwdPrologueParams p;
  p.dy = g.data_ptr();
  p.dy_f32 = f32;
  p.y = yc.data_ptr();
  p.z = zc.data_ptr<float>();
  p.lin_num = linear ? ln.data_ptr() : nullptr;
  p.lin_num_bf16 = lin_bf16;
  p.lin_den = linear ? ld.data_ptr<float>() : nullptr;
  p.rows = zc.numel();
  p.head_dim = yc.size(-1);
  p.d_num_bf16 = out.d_num_bf16.data_ptr();
  p.d_num = linear && !lin_bf16 ? out.d_num.data_ptr<float>() : nullptr;
  p.d_den = out.d_den.data_ptr<float>();
  p.dc = linear ? out.dc.data_ptr<float>() : nullptr;
  const at::Tensor scale = alpha.defined() ? alpha.to(at::kFloat).contiguous() : at::Tensor();
  if (scale.defined()) {
    TORCH_CHECK(scale.numel() == zc.size(1), "window backward prologue: alpha has ", scale.numel(),
                " elements for ", zc.size(1), " heads");
    out.dy_dot_y = at::empty(zc.sizes(), zc.options());
    p.scale = scale.data_ptr<float>();
    p.heads = zc.size(1);
    p.length = zc.size(2);
    p.dy_dot_y = out.dy_dot_y.data_ptr<float>();
  }
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchWindowBwdPrologue(p);
  TORCH_CHECK(err == nullptr, "window backward prologue: CUDA launch failed: ", err);
  return out;
}

}  // namespace linearize::kernels::detail
