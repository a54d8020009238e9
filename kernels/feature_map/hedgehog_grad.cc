#include "kernels/feature_map/hedgehog_grad.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/feature_map/hedgehog_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"

namespace linearize::kernels::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Outputs phi, and with `pass` x itself (autograd makes it a view whose
// gradient comes back here).
struct HedgehogFunction : public torch::autograd::Function<HedgehogFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               bool pass) {
    const HedgehogForward f = HedgehogForwardCuda(x, weight);
    ctx->save_for_backward({f.x, f.weight_t, f.phi});
    if (pass) return {f.phi, x};
    return {f.phi};
  }

  // hedgehog_bwd_cuda.cu (HedgehogBackwardCuda); autograd casts each
  // gradient to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    HedgehogGrads g = HedgehogBackwardCuda(s[0], s[1], s[2], grads[0],
                                           grads.size() > 1 ? grads[1] : at::Tensor());
    return {g.dx, g.d_weight, at::Tensor()};
  }
};

// Whether the training kernels cover x and weight (with autograd on).
bool TrainKernelsCover(const at::Tensor& x, const at::Tensor& weight) {
  if (!x.defined() || !weight.defined() || !CudaTrainingApplies(x.device(), {&x, &weight}) ||
      !TrainsInBfloat16(x) || !at::isFloatingType(weight.scalar_type())) {
    return false;
  }
  const std::optional<HedgehogParams> fp = HedgehogShape(x, weight);
  if (!fp) return false;
  HedgehogBwdParams bp;
  bp.batch = fp->batch;
  bp.heads = fp->heads;
  bp.length = fp->length;
  bp.head_dim = fp->head_dim;
  bp.half_features = fp->half_features;
  return HedgehogBwdSupported(bp);
}

// The backward kernel on p's inputs (phi and d_phi, or dl), with x, its
// transposed weight and the optional passed-through gradient.
HedgehogGrads RunBackward(HedgehogBwdParams p, const at::Tensor& x, const at::Tensor& weight_t,
                          const at::Tensor& d_pass_in, bool want_dx = true) {
  const at::Tensor d_pass =
      d_pass_in.defined() ? d_pass_in.to(at::kBFloat16).contiguous() : at::Tensor();
  HedgehogGrads g;
  if (want_dx) g.dx = at::empty_like(x);
  g.d_weight = at::zeros({weight_t.size(0), weight_t.size(2), weight_t.size(1)},  // [H, D, Fh]
                         x.options().dtype(at::kFloat));
  p.x = x.data_ptr();
  p.weight_t = weight_t.data_ptr();
  p.d_pass = d_pass.defined() ? d_pass.data_ptr() : nullptr;
  p.d_x = want_dx ? g.dx.data_ptr() : nullptr;
  p.d_weight = g.d_weight.data_ptr<float>();
  p.batch = x.size(0);
  p.heads = x.size(1);
  p.length = x.size(2);
  p.head_dim = x.size(3);
  p.half_features = weight_t.size(1);
  p.sm_count = CurrentSmCount();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchHedgehogBwd(p);
  TORCH_CHECK(err == nullptr, "HedgehogFeatureMap backward: CUDA launch failed: ", err);
  CountCudaFeatureMapLaunch();
  return g;
}

// From the logits' gradient dl; op names the caller in shape errors.
HedgehogGrads FromLogits(const char* op, const at::Tensor& x, const at::Tensor& weight_t,
                         const at::Tensor& dl_in, const at::Tensor& d_pass, bool want_dx) {
  TORCH_CHECK(dl_in.dim() == 4 && dl_in.size(3) == weight_t.size(1) &&
                  dl_in.sizes().slice(0, 3) == x.sizes().slice(0, 3),
              op, ": dl is ", dl_in.sizes(), ", x ", x.sizes(), ", W^T ", weight_t.sizes());
  const at::Tensor dl = dl_in.to(at::kBFloat16).contiguous();
  HedgehogBwdParams p;
  p.dl = dl.data_ptr();
  return RunBackward(p, x, weight_t, d_pass, want_dx);
}

}  // namespace

HedgehogForward HedgehogForwardCuda(const at::Tensor& x, const at::Tensor& weight) {
  std::optional<HedgehogParams> p = HedgehogShape(x, weight);
  TORCH_CHECK(p.has_value(), "HedgehogForwardCuda: the map kernel does not cover x ", x.sizes(),
              " and weight ", weight.sizes());
  p->type = ElementType::kBF16;
  HedgehogForward f;
  f.x = x.to(at::kBFloat16).contiguous();
  f.weight_t = weight.to(at::kBFloat16).transpose(1, 2).contiguous();  // [H, Fh, D]
  f.phi = RunHedgehog(*p, f.x, f.weight_t);
  return f;
}

HedgehogGrads HedgehogBackwardCuda(const at::Tensor& x, const at::Tensor& weight_t,
                                   const at::Tensor& phi, const at::Tensor& d_phi_in,
                                   const at::Tensor& d_pass) {
  const at::Tensor d_phi = d_phi_in.to(at::kBFloat16).contiguous();
  HedgehogBwdParams p;
  p.phi = phi.data_ptr();
  p.d_phi = d_phi.data_ptr();
  return RunBackward(p, x, weight_t, d_pass);
}

HedgehogGrads HedgehogBackwardFromLogitsCuda(const at::Tensor& x, const at::Tensor& weight_t,
                                             const at::Tensor& dl, const at::Tensor& d_pass) {
  return FromLogits("HedgehogBackwardFromLogitsCuda", x, weight_t, dl, d_pass, true);
}

at::Tensor HedgehogWeightGradFromLogitsCuda(const at::Tensor& x, const at::Tensor& weight_t,
                                            const at::Tensor& dl) {
  return FromLogits("HedgehogWeightGradFromLogitsCuda", x, weight_t, dl, at::Tensor(), false)
      .d_weight;
}

std::optional<at::Tensor> HedgehogFeatureMapTrainCuda(const at::Tensor& x,
                                                      const at::Tensor& weight) {
  if (!TrainKernelsCover(x, weight)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  return HedgehogFunction::apply(x, weight, /*pass=*/false)[0];
}

std::optional<std::pair<at::Tensor, at::Tensor>> HedgehogFeatureMapTrainCudaPassing(
    const at::Tensor& x, const at::Tensor& weight) {
  if (!TrainKernelsCover(x, weight)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  const variable_list out = HedgehogFunction::apply(x, weight, /*pass=*/true);
  return std::make_pair(out[0], out[1]);
}

bool FeaturesTrainOnKernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps) {
  if (!q.defined() || !k.defined() || !v.defined() || q.dim() != 4 ||
      !CudaTrainingApplies(q.device(), {&q, &k, &v, &maps.q_weight, &maps.k_weight}) ||
      !TrainsInBfloat16(q) || !TrainsInBfloat16(k) || !TrainsInBfloat16(v)) {
    return false;
  }
  // elu+1 features have F = D; the map kernel's sizes (D 64/128, Fh 32/64)
  // are the chunked kernels' D and F / 2.
  if (maps.kind == FeatureMapKind::kEluPlusOne) return q.size(3) == 64 || q.size(3) == 128;
  return maps.q_weight.defined() && HedgehogShape(q, maps.q_weight).has_value();
}

}  // namespace linearize::kernels::detail
