#include "kernels/lizard/lizard_cuda.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>
#include <vector>

#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/linear_attention/hybrid_state.h"
#include "kernels/linear_attention/linear_attention_cuda.h"
#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lizard/lizard_args.h"
#include "kernels/lizard/lizard_decode_params.h"
#include "kernels/lolcats/lolcats_window_params.h"

namespace linearize::kernels::lizard::internal {

std::optional<at::Tensor> DecodeStepCuda(State& state, const Inputs& in, const Weights& weights,
                                         const Options& options) {
  LizardDecodeParams p;
  const FeatureMaps& maps = weights.maps;
  const at::Tensor& qw_in = WindowQ(in);
  const at::Tensor& kw_in = WindowK(in);
  if (maps.kind != FeatureMapKind::kHedgehog ||
      !detail::KernelElementType(in.q.scalar_type(), &p.type) ||
      !detail::CudaKernelApplies(
          in.q.device(), {&in.q, &in.k, &in.v, &qw_in, &kw_in, &in.log_gamma, &state.kv,
                          &state.k_sum, &state.k_window, &state.v_window, &state.position,
                          &maps.q_weight, &maps.k_weight, &weights.meta_logits, &weights.alpha}) ||
      state.kv.scalar_type() != at::kFloat || state.k_sum.scalar_type() != at::kFloat ||
      state.k_window.scalar_type() != in.q.scalar_type() ||
      state.v_window.scalar_type() != in.q.scalar_type() ||
      qw_in.scalar_type() != in.q.scalar_type() || kw_in.scalar_type() != in.q.scalar_type() ||
      in.k.scalar_type() != in.q.scalar_type() || in.v.scalar_type() != in.q.scalar_type() ||
      !state.kv.is_contiguous() || !state.k_sum.is_contiguous() ||
      !state.k_window.is_contiguous() || !state.v_window.is_contiguous() ||
      !state.position.is_contiguous()) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(in.q.device());
  const detail::DecodeMapWeights w = detail::ToDecodeMapWeights(maps.q_weight, maps.k_weight);
  p.weight_type = w.type;
  const at::Tensor log_gamma = in.log_gamma.to(at::kFloat).contiguous();  // [B, Hg, 1]
  const at::Tensor meta = weights.meta_logits.to(at::kFloat).contiguous();
  const at::Tensor alpha = weights.alpha.to(at::kFloat).contiguous();
  p.batch = in.q.size(0);
  p.heads = in.q.size(1);
  p.kv_heads = in.k.size(1);
  p.head_dim = in.q.size(3);
  p.feature_dim = state.kv.size(2);
  p.window = options.window;
  p.scale = static_cast<float>(1.0 / std::sqrt(double(p.head_dim)));
  p.eps = static_cast<float>(options.eps);
  p.q_weight = w.q.data_ptr();
  p.k_weight = w.k.data_ptr();
  p.k_weight_heads = w.k.size(0);
  p.log_gamma = log_gamma.data_ptr<float>();
  p.gamma_heads = log_gamma.size(1);
  p.meta = meta.size(1);
  p.meta_logits = p.meta > 0 ? meta.data_ptr<float>() : nullptr;
  p.alpha = alpha.data_ptr<float>();
  p.column_splits = detail::DecodeColumnSplits(p.batch, p.heads, p.head_dim);
  if (!LizardDecodeSupported(p)) return std::nullopt;
  const at::Tensor q = in.q.contiguous(), k = in.k.contiguous(), v = in.v.contiguous();
  const at::Tensor qw = qw_in.contiguous(), kw = kw_in.contiguous();
  at::Tensor y = at::empty(in.q.sizes(), in.q.options());
  const at::Tensor features = at::empty(state.k_sum.sizes(), state.k_sum.options());
  p.new_features = features.data_ptr<float>();
  p.kv = state.kv.data_ptr<float>();
  p.k_sum = state.k_sum.data_ptr<float>();
  p.k_window = state.k_window.data_ptr();
  p.v_window = state.v_window.data_ptr();
  p.position = state.position.data_ptr<int64_t>();
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.q_window = qw.data_ptr();
  p.k_window_new = kw.data_ptr();
  p.y = y.data_ptr();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLizardDecode(p);
  TORCH_CHECK(err == nullptr, "lizard::DecodeStep: CUDA launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  return y;
}

namespace {

// The window kernel's sizes and weights for these inputs, or nullopt when it
// does not take them. `keep` holds the float32 copies the params point to.
std::optional<LolcatsWindowParams> WindowParams(const Inputs& in, const Weights& weights,
                                                const Options& options, at::Tensor (&keep)[2]) {
  LolcatsWindowParams p;
  const at::Tensor& qw = WindowQ(in);
  const at::Tensor& kw = WindowK(in);
  if (!detail::KernelElementType(qw.scalar_type(), &p.type) ||
      kw.scalar_type() != qw.scalar_type() || in.v.scalar_type() != qw.scalar_type() ||
      weights.meta_logits.size(1) == 0) {
    return std::nullopt;
  }
  p.batch = qw.size(0);
  p.heads = qw.size(1);
  p.kv_heads = kw.size(1);
  p.length = qw.size(2);
  p.head_dim = qw.size(3);
  p.window = options.window;
  p.scale = static_cast<float>(1.0 / std::sqrt(double(p.head_dim)));
  p.eps = static_cast<float>(options.eps);
  p.sink_count = weights.meta_logits.size(1);
  keep[0] = weights.meta_logits.to(at::kFloat).contiguous();
  keep[1] = weights.alpha.to(at::kFloat).contiguous();
  p.sinks = keep[0].data_ptr<float>();
  p.alpha = keep[1].data_ptr<float>();
  if (!LolcatsWindowSupported(p)) return std::nullopt;
  return p;
}

}  // namespace

namespace {

// The kernels after the checks. From the empty state (initial == nullptr):
// both branches over the prompt. Continuing `initial` at position p0 > 0:
// the gated branch over the prompt from the state; the window branch over
// the ring's keys of positions Start(p0) .. p0 - 1 (zero queries, rows
// dropped) followed by the prompt, as the LibTorch Continue runs it.
std::optional<PrefillResult> RunKernels(const char* op, const Inputs& in, const Weights& weights,
                                        const Options& options, const detail::QkvDims& dims,
                                        bool want_state, const State* initial, int64_t p0) {
  const FeatureMaps& maps = weights.maps;
  const at::Tensor& qw = WindowQ(in);
  const at::Tensor& kw = WindowK(in);
  at::Tensor keep[2];
  std::optional<LolcatsWindowParams> wp = WindowParams(in, weights, options, keep);
  if (dims.length == 0 || !wp) return std::nullopt;
  const c10::cuda::CUDAGuard guard(in.q.device());
  // Gated branch: its output num / (den + eps) over keys j <= i (and the
  // final state), which the window kernel adds its branch to.
  detail::CudaLinearInputs lin_in;
  lin_in.v = in.v;
  lin_in.log_gamma = in.log_gamma;
  lin_in.eps = options.eps;
  lin_in.want_state = want_state;
  if (initial != nullptr) {
    lin_in.kv0 = initial->kv;
    lin_in.k_sum0 = initial->k_sum;
  }
  const std::optional<detail::CudaLinearOutputs> lin =
      detail::ChunkedCausalLinearOnMapsCuda(lin_in, maps, in.q, in.k, dims.q_heads);
  if (!lin) return std::nullopt;
  // Window branch, added to the gated one, over E = [ring context | prompt].
  const int64_t t = dims.length;
  const int64_t s0 = initial != nullptr ? detail::WindowSpec{options.window, false}.Start(p0) : 0;
  const int64_t ctx = initial != nullptr ? p0 - s0 : 0;
  const auto front = [&](const at::Tensor& ring, const at::Tensor& x) {
    return ctx == 0 ? x : at::cat({detail::RingSequence(ring, s0, p0), x}, 2);
  };
  const auto pad = [&](const at::Tensor& x) {  // zero rows in front
    if (ctx == 0) return x.contiguous();
    std::vector<int64_t> size = x.sizes().vec();
    size[2] = ctx;
    return at::cat({at::zeros(size, x.options()), x}, 2).contiguous();
  };
  const at::Tensor q = pad(qw);
  const at::Tensor k =
      initial != nullptr ? front(initial->k_window, kw).contiguous() : kw.contiguous();
  const at::Tensor v =
      initial != nullptr ? front(initial->v_window, in.v).contiguous() : in.v.contiguous();
  const at::Tensor lin_y = pad(lin->y);
  at::Tensor y = at::empty(q.sizes(), q.options());
  wp->length = ctx + t;
  wp->q = q.data_ptr();
  wp->k = k.data_ptr();
  wp->v = v.data_ptr();
  wp->lin_num = lin_y.data_ptr();
  wp->lin_num_bf16 = lin_y.scalar_type() == at::kBFloat16;
  wp->lin_normalised = true;
  wp->lin_den = nullptr;
  wp->y = y.data_ptr();
  wp->stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLolcatsWindow(*wp);
  TORCH_CHECK(err == nullptr, op, ": window kernel launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  PrefillResult out;
  out.y = ctx == 0 ? y : y.narrow(2, ctx, t).contiguous();
  if (want_state) {
    if (initial == nullptr) {
      out.state.kv = lin->kv;
      out.state.k_sum = lin->k_sum;
      out.state.k_window = detail::RingFromSequence(kw.detach(), options.window);
      out.state.v_window = detail::RingFromSequence(in.v.detach(), options.window);
      out.state.position = at::full({dims.batch}, t, in.q.options().dtype(at::kLong));
    } else {  // a continued state keeps its dtypes, as DecodeStep keeps them
      out.state.kv = lin->kv.to(initial->kv.scalar_type());
      out.state.k_sum = lin->k_sum.to(initial->k_sum.scalar_type());
      out.state.k_window = detail::RingAppend(initial->k_window, p0, kw);
      out.state.v_window = detail::RingAppend(initial->v_window, p0, in.v);
      out.state.position = initial->position + t;
    }
  }
  return out;
}

}  // namespace

std::optional<PrefillResult> PrefillCuda(const char* op, const Inputs& in, const Weights& weights,
                                         const Options& options, bool want_state,
                                         const State* initial) {
  const FeatureMaps& maps = weights.maps;
  const at::Tensor& qw = WindowQ(in);
  const at::Tensor& kw = WindowK(in);
  const at::Tensor* none = nullptr;
  if (!in.q.defined() || maps.kind != FeatureMapKind::kHedgehog ||
      !detail::CudaKernelApplies(
          in.q.device(),
          {&in.q, &in.k, &in.v, &in.log_gamma, &qw, &kw, &maps.q_weight, &maps.k_weight,
           &weights.meta_logits, &weights.alpha, initial ? &initial->kv : none,
           initial ? &initial->k_sum : none, initial ? &initial->k_window : none,
           initial ? &initial->v_window : none})) {
    return std::nullopt;
  }
  const detail::QkvDims dims = Check(op, in, weights, options);
  int64_t p0 = 0;
  if (initial != nullptr) {
    detail::CheckHybridState(op, *initial, dims, FeatureDim(maps, dims.head_dim), options.window,
                             in.q);
    p0 = detail::UniformPosition(op, initial->position);
    if (initial->k_window.scalar_type() != kw.scalar_type() ||
        initial->v_window.scalar_type() != in.v.scalar_type()) {
      return std::nullopt;
    }
  }
  return RunKernels(op, in, weights, options, dims, want_state, p0 > 0 ? initial : nullptr, p0);
}

}  // namespace linearize::kernels::lizard::internal
