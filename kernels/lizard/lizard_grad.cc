#include "kernels/lizard/lizard_grad.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include <limits>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/chunked_linear_grad.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/lizard/lizard_args.h"
#include "kernels/lolcats/lolcats_window_bwd_params.h"
#include "kernels/lolcats/lolcats_window_params.h"
#include "kernels/lolcats/window_bwd_outputs.h"
#include "kernels/lolcats/window_bwd_prologue.h"
#include "kernels/lolcats/window_shape.h"

namespace linearize::kernels::lizard::internal {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// d l_m = sum over rows i of dZ_i exp(l_m - c_i), per head, as
// exp(l_m - L) sum_i dZ_i exp(L - c_i) with L the head's largest sink logit:
// both exponents are <= 0 (c_i >= L), and the sum runs over [B, H, T]
// rather than [B, H, T, M].
at::Tensor SinkGradients(const at::Tensor& sinks, const at::Tensor& d_den,
                         const at::Tensor& row_max) {
  const int64_t h = sinks.size(0);
  if (sinks.size(1) == 0) return at::zeros_like(sinks);
  // [H, 1]; a head whose sinks are all -inf (each weight 0) takes the
  // lowest float, so that exp(sinks - top) is 0, not NaN.
  const at::Tensor top =
      std::get<0>(sinks.max(1, /*keepdim=*/true)).clamp_min(std::numeric_limits<float>::lowest());
  const at::Tensor rows =
      (d_den * at::exp(top.view({1, h, 1}) - row_max)).sum(at::IntArrayRef{0, 2});
  return at::exp(sinks - top) * rows.unsqueeze(1);
}

// y = y_other + alpha_h y_win (alpha and y_other given), else y = y_win,
// with y_win the window branch: one kernel forward, and a backward whose
// prologue scales dy by alpha and forms alpha's gradient (no bf16 products
// and sums of whole tensors around the kernels).
struct WindowBranchFunction : public torch::autograd::Function<WindowBranchFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& meta_logits,
                               const at::Tensor& alpha, const at::Tensor& y_other,
                               int64_t window) {
    const at::Tensor qb = q.to(at::kBFloat16).contiguous(), kb = k.to(at::kBFloat16).contiguous(),
                     vb = v.to(at::kBFloat16).contiguous();
    const at::Tensor sinks = meta_logits.to(at::kFloat).contiguous();
    const bool combined = alpha.defined();
    const at::Tensor a = combined ? alpha.to(at::kFloat).reshape({q.size(1)}).contiguous()
                                  : at::ones({q.size(1)}, sinks.options());
    const at::Tensor other = y_other.defined() ? y_other.to(at::kBFloat16).contiguous() : y_other;
    at::Tensor y = at::empty(qb.sizes(), qb.options());
    at::Tensor y_win = combined ? at::empty(qb.sizes(), qb.options()) : y;
    at::Tensor z = at::empty({q.size(0), q.size(1), q.size(2)}, sinks.options());
    auto p = detail::WindowShape<LolcatsWindowParams>(q, k, window, sinks.size(1));
    p.type = ElementType::kBF16;
    p.q = qb.data_ptr();
    p.k = kb.data_ptr();
    p.v = vb.data_ptr();
    p.sinks = sinks.data_ptr<float>();
    p.alpha = a.data_ptr<float>();
    if (other.defined()) {
      p.lin_num = other.data_ptr();
      p.lin_num_bf16 = true;
      p.lin_normalised = true;
    }
    p.y = y.data_ptr();
    if (combined) p.y_window = y_win.data_ptr();
    p.row_den = z.data_ptr<float>();  // no linear terms: the branch's own Z_i
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchLolcatsWindow(p);
    TORCH_CHECK(err == nullptr, "lizard window (training): CUDA launch failed: ", err);
    detail::CountCudaAttentionLaunch();
    ctx->save_for_backward({qb, kb, vb, sinks, y_win, z, combined ? a : at::Tensor()});
    ctx->saved_data["window"] = window;
    ctx->saved_data["has_other"] = other.defined();
    detail::WindowInputTypes::Of(q, k, v).Save(ctx);
    return {y};
  }

  // Gradients in float32 or bfloat16 (window_bwd_outputs.h); autograd casts
  // each to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &q = s[0], &k = s[1], &v = s[2], &sinks = s[3], &y_win = s[4], &z = s[5];
    const at::Tensor& alpha = s[6];
    // Through y_win = N / Z: dN = a dy / Z and dZ = -a (dy . y_win) / Z, and
    // alpha's gradient sum_rows dy . y_win per head.
    const detail::WindowBwdGrads pro =
        detail::WindowBwdPrologueCuda(grads[0], y_win, z, at::Tensor(), at::Tensor(), alpha);
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
    const at::Tensor d_sinks = SinkGradients(sinks, d_den, row_max);
    const at::Tensor d_alpha =
        alpha.defined() ? pro.dy_dot_y.sum(at::IntArrayRef{0, 2}) : at::Tensor();
    const at::Tensor d_other = ctx->saved_data["has_other"].toBool() ? grads[0] : at::Tensor();
    return {qkv.dq,  detail::SumToKvHeads(qkv.dk, k.size(1)),
            detail::SumToKvHeads(qkv.dv, v.size(1)),
            d_sinks, d_alpha, d_other, at::Tensor()};
  }
};

// Whether the window kernels cover the inputs' dtypes and sizes.
bool WindowKernelsCover(const at::Tensor& qw, const at::Tensor& kw, const at::Tensor& v,
                        const at::Tensor& meta_logits, int64_t window) {
  for (const at::Tensor* x : {&qw, &kw, &v, &meta_logits}) {
    if (!x->defined()) return false;
  }
  if (!detail::TrainsInBfloat16(qw) || !detail::TrainsInBfloat16(kw) ||
      !detail::TrainsInBfloat16(v) || qw.dim() != 4 || kw.dim() != 4 || meta_logits.dim() != 2) {
    return false;
  }
  const bool shapes = v.sizes() == kw.sizes() && kw.size(0) == qw.size(0) &&
                      kw.size(2) == qw.size(2) && kw.size(3) == qw.size(3) &&
                      qw.size(1) % kw.size(1) == 0 && meta_logits.size(0) == qw.size(1) &&
                      qw.size(2) >= 1;
  if (!shapes) return false;
  // Pointers are set at launch; these sizes decide.
  auto fp = detail::WindowShape<LolcatsWindowParams>(qw, kw, window, meta_logits.size(1));
  fp.type = ElementType::kBF16;
  const auto bp = detail::WindowShape<LolcatsWindowBwdParams>(qw, kw, window, meta_logits.size(1));
  return LolcatsWindowSizesSupported(fp, /*lizard=*/true) && LolcatsWindowBwdSupported(bp);
}

}  // namespace

std::optional<at::Tensor> WindowBranchTrainCuda(const at::Tensor& qw, const at::Tensor& kw,
                                                const at::Tensor& v, const at::Tensor& meta_logits,
                                                int64_t window, const at::Tensor& alpha,
                                                const at::Tensor& y_other) {
  if (!WindowKernelsCover(qw, kw, v, meta_logits, window) ||
      !detail::CudaTrainingApplies(qw.device(), {&qw, &kw, &v, &meta_logits, &alpha, &y_other}) ||
      (y_other.defined() && (!alpha.defined() || y_other.sizes() != qw.sizes())) ||
      (alpha.defined() && alpha.numel() != qw.size(1))) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(qw.device());
  return WindowBranchFunction::apply(qw, kw, v, meta_logits, alpha, y_other, window)[0];
}

std::optional<detail::NormalizedLinear> GatedTrainCuda(const Inputs& in, const Weights& weights,
                                                       const Options& options, bool pass_v) {
  const FeatureMaps& maps = weights.maps;
  if (maps.kind != FeatureMapKind::kHedgehog) return std::nullopt;
  return detail::HedgehogNormalizedLinearTrainCuda(in.q, in.k, in.v, in.log_gamma, maps.q_weight,
                                                   maps.k_weight, options.eps, pass_v);
}

std::optional<at::Tensor> TrainCuda(const char* op, const Inputs& in, const Weights& weights,
                                    const Options& options) {
  if (weights.maps.kind != FeatureMapKind::kHedgehog ||
      !WindowKernelsCover(WindowQ(in), WindowK(in), in.v, weights.meta_logits, options.window)) {
    return std::nullopt;
  }
  const detail::QkvDims dims = Check(op, in, weights, options);
  // Without grouped-query heads v passes through the gated kernels, which
  // add the window's d_v into theirs.
  const bool pass_v = dims.kv_heads == dims.q_heads;
  const std::optional<detail::NormalizedLinear> gated =
      GatedTrainCuda(in, weights, options, pass_v);
  if (!gated) return std::nullopt;
  const std::optional<at::Tensor> y = WindowBranchTrainCuda(
      WindowQ(in), WindowK(in), pass_v ? gated->v_pass : in.v, weights.meta_logits, options.window,
      weights.alpha.reshape({-1}), gated->y);
  TORCH_CHECK(y.has_value(), op, ": the window kernels declined inputs they cover");
  return y->to(in.q.scalar_type());
}

}  // namespace linearize::kernels::lizard::internal
