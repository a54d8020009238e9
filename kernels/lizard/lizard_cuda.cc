#include "kernels/lizard/lizard_cuda.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>

#include "kernels/linear_attention/cuda_dispatch.h"
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
  // Weights stay in their dtype when the kernel reads it (see the LoLCATs decode).
  const at::ScalarType wt =
      maps.q_weight.scalar_type() == at::kBFloat16 && maps.k_weight.scalar_type() == at::kBFloat16
          ? at::kBFloat16
          : at::kFloat;
  const at::Tensor qmap = maps.q_weight.to(wt).contiguous();
  const at::Tensor kmap = maps.k_weight.to(wt).contiguous();
  detail::KernelElementType(wt, &p.weight_type);
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
  p.q_weight = qmap.data_ptr();
  p.k_weight = kmap.data_ptr();
  p.k_weight_heads = kmap.size(0);
  p.log_gamma = log_gamma.data_ptr<float>();
  p.gamma_heads = log_gamma.size(1);
  p.meta = meta.size(1);
  p.meta_logits = p.meta > 0 ? meta.data_ptr<float>() : nullptr;
  p.alpha = alpha.data_ptr<float>();
  // As many CTAs per (row, head) as fit in one wave of the GPU, up to 4.
  const int64_t sms = detail::CurrentSmCount();
  for (const int64_t splits : {4, 2}) {
    if (p.batch * p.heads * splits <= sms && p.head_dim % (4 * splits) == 0) {
      p.column_splits = splits;
      break;
    }
  }
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

std::optional<at::Tensor> WindowCombineCuda(const Inputs& in, const Weights& weights,
                                            const Options& options,
                                            const detail::LinearTerms& gla) {
  LolcatsWindowParams p;
  const at::Tensor& qw = WindowQ(in);
  const at::Tensor& kw = WindowK(in);
  if (!detail::KernelElementType(in.q.scalar_type(), &p.type) ||
      !detail::CudaKernelApplies(in.q.device(), {&qw, &kw, &in.v, &weights.meta_logits,
                                                 &weights.alpha, &gla.num, &gla.den}) ||
      kw.scalar_type() != qw.scalar_type() || in.v.scalar_type() != qw.scalar_type() ||
      gla.num.scalar_type() != at::kFloat || gla.den.scalar_type() != at::kFloat ||
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
  const at::Tensor sinks = weights.meta_logits.to(at::kFloat).contiguous();
  const at::Tensor alpha = weights.alpha.to(at::kFloat).contiguous();
  p.sinks = sinks.data_ptr<float>();
  p.alpha = alpha.data_ptr<float>();
  if (!LolcatsWindowSupported(p)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(in.q.device());
  const at::Tensor q = qw.contiguous(), k = kw.contiguous(), v = in.v.contiguous();
  const at::Tensor num = gla.num.contiguous(), den = gla.den.contiguous();
  at::Tensor y = at::empty(in.q.sizes(), in.q.options());
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.lin_num = num.data_ptr<float>();
  p.lin_den = den.data_ptr<float>();
  p.y = y.data_ptr();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLolcatsWindow(p);
  TORCH_CHECK(err == nullptr, "lizard: window kernel launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  return y;
}

}  // namespace linearize::kernels::lizard::internal
