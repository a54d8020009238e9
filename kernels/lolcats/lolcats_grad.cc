#include "kernels/lolcats/lolcats_grad.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/feature_map/hedgehog_grad.h"
#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/lolcats/lolcats_window_bwd_params.h"
#include "kernels/lolcats/lolcats_window_params.h"
#include "kernels/lolcats/window_bwd_outputs.h"
#include "kernels/lolcats/window_bwd_prologue.h"
#include "kernels/lolcats/window_shape.h"

namespace linearize::kernels::lolcats::internal {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct WindowCombineFunction : public torch::autograd::Function<WindowCombineFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& gate,
                               const at::Tensor& lin_num, const at::Tensor& lin_den,
                               int64_t window) {
    const at::Tensor qb = q.to(at::kBFloat16).contiguous(), kb = k.to(at::kBFloat16).contiguous(),
                     vb = v.to(at::kBFloat16).contiguous();
    const at::Tensor g = gate.to(at::kFloat).contiguous();
    // bf16 linear terms (the chunked kernels' training output) stay bf16.
    const at::Tensor ln =
        (lin_num.scalar_type() == at::kBFloat16 ? lin_num : lin_num.to(at::kFloat)).contiguous();
    const at::Tensor ld = lin_den.to(at::kFloat).contiguous();
    at::Tensor y = at::empty(qb.sizes(), qb.options());
    at::Tensor z = at::empty({q.size(0), q.size(1), q.size(2)}, g.options());
    auto p = detail::WindowShape<LolcatsWindowParams>(q, k, window);
    p.type = ElementType::kBF16;
    p.q = qb.data_ptr();
    p.k = kb.data_ptr();
    p.v = vb.data_ptr();
    p.gate = g.data_ptr<float>();
    p.lin_num = ln.data_ptr();
    p.lin_num_bf16 = ln.scalar_type() == at::kBFloat16;
    p.lin_den = ld.data_ptr<float>();
    p.y = y.data_ptr();
    p.row_den = z.data_ptr<float>();
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchLolcatsWindow(p);
    TORCH_CHECK(err == nullptr, "lolcats window (training): CUDA launch failed: ", err);
    detail::CountCudaAttentionLaunch();
    ctx->save_for_backward({qb, kb, vb, g, y, z, ln, ld});
    ctx->saved_data["window"] = window;
    detail::WindowInputTypes::Of(q, k, v).Save(ctx);
    return {y};
  }

  // WindowCombineBackward; autograd casts each gradient to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const WindowCombineGrads g =
        WindowCombineBackward(WindowCombineSaved::Of(s, ctx->saved_data["window"].toInt(),
                                                     detail::WindowInputTypes::Load(ctx)),
                              grads[0]);
    return {g.dq, g.dk, g.dv, g.d_gate, g.d_num, g.d_den, at::Tensor()};
  }
};

bool WindowCombineTrainApplies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& gate, int64_t window) {
  for (const at::Tensor* x : {&q, &k, &v, &gate}) {
    if (!x->defined()) return false;
  }
  if (!detail::TrainsInBfloat16(q) || !detail::TrainsInBfloat16(k) ||
      !detail::TrainsInBfloat16(v) || q.dim() != 4 || k.dim() != 4) {
    return false;
  }
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  const bool shapes = v.sizes() == k.sizes() && k.size(0) == b && k.size(2) == t &&
                      k.size(3) == d && h % k.size(1) == 0 && gate.numel() == h && t >= 1;
  auto fp = detail::WindowShape<LolcatsWindowParams>(q, k, window);
  fp.type = ElementType::kBF16;
  const auto bp = detail::WindowShape<LolcatsWindowBwdParams>(q, k, window);
  return shapes && LolcatsWindowSizesSupported(fp, /*lizard=*/false) &&
         LolcatsWindowBwdSupported(bp);
}

LolcatsWindowBwdParams KernelShape(const WindowCombineSaved& s) {
  return detail::WindowShape<LolcatsWindowBwdParams>(s.q, s.k, s.window);
}

// The fold's tensor x: bfloat16, contiguous, of the given sizes.
void CheckFoldTensor(const char* name, const at::Tensor& x, at::IntArrayRef sizes) {
  TORCH_CHECK(x.defined(), "lolcats window backward fold: ", name, " is undefined");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && x.is_contiguous() && x.sizes() == sizes,
              "lolcats window backward fold: ", name, " must be contiguous bfloat16 ", sizes,
              ", got ", x.scalar_type(), " ", x.sizes(),
              x.is_contiguous() ? "" : " (not contiguous)");
}

}  // namespace

WindowCombineRowGrads WindowCombineRows(const WindowCombineSaved& s, const at::Tensor& dy) {
  // Through y = N / Z: dN = dy / Z and dZ = -(dy . y) / Z, shared by both
  // parts, and c's gradient in closed form (the sum over t cancels):
  // dc_i = dN_i . lin_num_i + dZ_i lin_den_i; then d_g = -sum_i dc_i / g.
  // (Summing -t in the query kernel instead, with no linear terms saved,
  // measured d_g's error 2.7x the bf16 bound where the window dominates:
  // session 24.)
  WindowCombineRowGrads out;
  out.prologue = detail::WindowBwdPrologueCuda(dy, s.y, s.z, s.lin_num, s.lin_den);
  out.d_gate = -out.prologue.dc.sum(at::IntArrayRef{0, 2}) / s.gate;
  return out;
}

bool WindowFoldApplies(const WindowCombineSaved& s, int64_t half_features) {
  return half_features == kWindowFoldHalfFeatures &&
         LolcatsWindowBwdFoldUnsupported(KernelShape(s)) == nullptr;
}

WindowCombineGrads WindowCombineQkvGrads(const WindowCombineSaved& s,
                                         const WindowCombineRowGrads& rows,
                                         const WindowFold* fold) {
  const detail::WindowBwdGrads& pro = rows.prologue;
  WindowCombineGrads out;
  out.d_gate = rows.d_gate;
  out.d_num = pro.d_num;
  out.d_den = pro.d_den;

  const at::TensorOptions f32 = s.z.options();
  const at::Tensor row_max = at::empty(s.z.sizes(), f32);
  const at::Tensor argmax = at::empty(s.z.sizes(), f32.dtype(at::kInt));
  LolcatsWindowBwdParams p = KernelShape(s);
  p.q = s.q.data_ptr();
  p.k = s.k.data_ptr();
  p.v = s.v.data_ptr();
  p.d_num = pro.d_num_bf16.data_ptr();
  p.d_den = pro.d_den.data_ptr<float>();
  p.dc = pro.dc.data_ptr<float>();
  p.gate = s.gate.data_ptr<float>();
  if (fold != nullptr) {  // (the launcher refuses sizes the fold does not cover)
    const int64_t b = s.q.size(0), h = s.q.size(1), t = s.q.size(2), d = s.q.size(3);
    const int64_t fh = kWindowFoldHalfFeatures;
    CheckFoldTensor("dl_q", fold->dl_q, {b, h, t, fh});
    CheckFoldTensor("dl_k", fold->dl_k, {b, h, t, fh});
    CheckFoldTensor("q_weight_t", fold->q_weight_t, {h, fh, d});
    CheckFoldTensor("k_weight_t", fold->k_weight_t, {h, fh, d});
    CheckFoldTensor("d_v_add", fold->d_v_add, {b, h, t, d});
    p.q_map = {fold->dl_q.data_ptr(), fold->q_weight_t.data_ptr()};
    p.k_map = {fold->dl_k.data_ptr(), fold->k_weight_t.data_ptr()};
    p.d_v_add = fold->d_v_add.data_ptr();
  }
  const detail::WindowQkvGrads qkv = detail::AllocWindowGrads(p, s.q, s.types);
  p.row_max = row_max.data_ptr<float>();
  p.argmax = argmax.data_ptr<int>();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLolcatsWindowBwd(p);
  TORCH_CHECK(err == nullptr, "lolcats window backward: CUDA launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  out.dq = qkv.dq;
  out.dk = detail::SumToKvHeads(qkv.dk, s.k.size(1));
  out.dv = detail::SumToKvHeads(qkv.dv, s.v.size(1));
  return out;
}

WindowCombineGrads WindowCombineBackward(const WindowCombineSaved& s, const at::Tensor& dy) {
  return WindowCombineQkvGrads(s, WindowCombineRows(s, dy));
}

std::optional<at::Tensor> WindowCombineTrainCuda(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v, const at::Tensor& gate,
                                                 const at::Tensor& lin_num,
                                                 const at::Tensor& lin_den, int64_t window) {
  if (!lin_num.defined() || !lin_den.defined() ||
      !detail::CudaTrainingApplies(q.device(), {&q, &k, &v, &gate, &lin_num, &lin_den}) ||
      !WindowCombineTrainApplies(q, k, v, gate, window)) {
    return std::nullopt;
  }
  if (lin_num.sizes() != q.sizes() || lin_den.dim() != 3 || lin_den.size(0) != q.size(0) ||
      lin_den.size(1) != q.size(1) || lin_den.size(2) != q.size(2)) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  return WindowCombineFunction::apply(q, k, v, gate.reshape({q.size(1)}), lin_num, lin_den,
                                      window)[0];
}

bool TrainsOnKernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const Weights& weights, const Options& options) {
  return options.window_kind == WindowKind::kSliding &&
         detail::FeaturesTrainOnKernels(q, k, v, weights.maps) &&
         WindowCombineTrainApplies(q, k, v, weights.window_logit, options.window);
}

}  // namespace linearize::kernels::lolcats::internal
