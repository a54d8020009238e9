#include "kernels/lizard/lizard_grad.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/lolcats/lolcats_window_bwd_params.h"
#include "kernels/lolcats/lolcats_window_params.h"
#include "kernels/lolcats/window_bwd_outputs.h"
#include "kernels/lolcats/window_bwd_prologue.h"
#include "kernels/lolcats/window_shape.h"

namespace linearize::kernels::lizard::internal {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct WindowBranchFunction : public torch::autograd::Function<WindowBranchFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& meta_logits, int64_t window) {
    const at::Tensor qb = q.to(at::kBFloat16).contiguous(), kb = k.to(at::kBFloat16).contiguous(),
                     vb = v.to(at::kBFloat16).contiguous();
    const at::Tensor sinks = meta_logits.to(at::kFloat).contiguous();
    // The kernel's Lizard mode scales the branch by alpha; 1 here (the caller
    // weighs it, so alpha's gradient stays with autograd).
    const at::Tensor ones = at::ones({q.size(1)}, sinks.options());
    at::Tensor y = at::empty(qb.sizes(), qb.options());
    at::Tensor z = at::empty({q.size(0), q.size(1), q.size(2)}, sinks.options());
    auto p = detail::WindowShape<LolcatsWindowParams>(q, k, window, sinks.size(1));
    p.type = ElementType::kBF16;
    p.q = qb.data_ptr();
    p.k = kb.data_ptr();
    p.v = vb.data_ptr();
    p.sinks = sinks.data_ptr<float>();
    p.alpha = ones.data_ptr<float>();
    p.y = y.data_ptr();
    p.row_den = z.data_ptr<float>();  // no linear terms: the branch's own Z_i
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchLolcatsWindow(p);
    TORCH_CHECK(err == nullptr, "lizard window (training): CUDA launch failed: ", err);
    detail::CountCudaAttentionLaunch();
    ctx->save_for_backward({qb, kb, vb, sinks, y, z});
    ctx->saved_data["window"] = window;
    detail::WindowInputTypes::Of(q, k, v).Save(ctx);
    return {y};
  }

  // Gradients in float32 or bfloat16 (window_bwd_outputs.h); autograd casts
  // each to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &q = s[0], &k = s[1], &v = s[2], &sinks = s[3], &y = s[4], &z = s[5];
    // Through y = N / Z: dN = dy / Z and dZ = -(dy . y) / Z.
    const detail::WindowBwdGrads pro =
        detail::WindowBwdPrologueCuda(grads[0], y, z, at::Tensor(), at::Tensor());
    const at::Tensor& d_den = pro.d_den;

    const at::TensorOptions f32 = z.options();
    const at::Tensor row_max = at::empty(z.sizes(), f32);
    auto p = detail::WindowShape<LolcatsWindowBwdParams>(q, k, ctx->saved_data["window"].toInt(),
                                                         sinks.size(1));
    p.q = q.data_ptr();
    p.k = k.data_ptr();
    p.v = v.data_ptr();
    p.d_num = pro.d_num_bf16.data_ptr();
    p.d_den = d_den.data_ptr<float>();
    p.sinks = sinks.data_ptr<float>();
    const detail::WindowQkvGrads qkv =
        detail::AllocWindowGrads(p, q, detail::WindowInputTypes::Load(ctx));
    p.row_max = row_max.data_ptr<float>();
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchLolcatsWindowBwd(p);
    TORCH_CHECK(err == nullptr, "lizard window backward: CUDA launch failed: ", err);
    detail::CountCudaAttentionLaunch();
    // d l_m = sum over rows of dZ_i exp(l_m - c_i), per head.
    const int64_t h = sinks.size(0), m = sinks.size(1);
    const at::Tensor d_sinks =
        (d_den.unsqueeze(-1) * at::exp(sinks.view({1, h, 1, m}) - row_max.unsqueeze(-1)))
            .sum(at::IntArrayRef{0, 2});
    return {qkv.dq, detail::SumToKvHeads(qkv.dk, k.size(1)),
            detail::SumToKvHeads(qkv.dv, v.size(1)), d_sinks, at::Tensor()};
  }
};

}  // namespace

std::optional<at::Tensor> WindowBranchTrainCuda(const at::Tensor& qw, const at::Tensor& kw,
                                                const at::Tensor& v, const at::Tensor& meta_logits,
                                                int64_t window) {
  for (const at::Tensor* x : {&qw, &kw, &v, &meta_logits}) {
    if (!x->defined()) return std::nullopt;
  }
  if (!detail::CudaTrainingApplies(qw.device(), {&qw, &kw, &v, &meta_logits}) ||
      !detail::TrainsInBfloat16(qw) || !detail::TrainsInBfloat16(kw) ||
      !detail::TrainsInBfloat16(v)) {
    return std::nullopt;
  }
  if (qw.dim() != 4 || kw.dim() != 4 || meta_logits.dim() != 2) return std::nullopt;
  const bool shapes = v.sizes() == kw.sizes() && kw.size(0) == qw.size(0) &&
                      kw.size(2) == qw.size(2) && kw.size(3) == qw.size(3) &&
                      qw.size(1) % kw.size(1) == 0 && meta_logits.size(0) == qw.size(1) &&
                      qw.size(2) >= 1;
  if (!shapes) return std::nullopt;
  // Pointers are set at launch; these sizes decide.
  auto fp = detail::WindowShape<LolcatsWindowParams>(qw, kw, window, meta_logits.size(1));
  fp.type = ElementType::kBF16;
  const auto bp = detail::WindowShape<LolcatsWindowBwdParams>(qw, kw, window, meta_logits.size(1));
  if (!LolcatsWindowSizesSupported(fp, /*lizard=*/true) || !LolcatsWindowBwdSupported(bp)) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(qw.device());
  return WindowBranchFunction::apply(qw, kw, v, meta_logits, window)[0];
}

}  // namespace linearize::kernels::lizard::internal
