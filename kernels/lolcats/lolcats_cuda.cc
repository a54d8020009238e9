#include "kernels/lolcats/lolcats_cuda.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/GradMode.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>

#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/linear_attention/linear_attention_cuda.h"
#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lolcats/lolcats_args.h"
#include "kernels/lolcats/lolcats_decode_params.h"
#include "kernels/lolcats/lolcats_window_params.h"

namespace linearize::kernels::lolcats::internal {

namespace {

// The window the chunked kernel fuses (its chunk).
constexpr int64_t kFusedWindow = 64;

// The kernels over one sequence (after the checks): the window terms and
// the shared normaliser, with the linear part over the keys delayed by W,
// from kv0 / k_sum0 when given (a continued state) or from zero. `lin` is
// unset when no key has left the window and there is no state to read.
struct KernelRun {
  at::Tensor y;
  std::optional<detail::CudaLinearOutputs> lin;
};

std::optional<KernelRun> RunKernels(const char* op, const at::Tensor& q, const at::Tensor& k,
                                    const at::Tensor& v, const Weights& weights,
                                    const Options& options, const detail::QkvDims& dims,
                                    bool want_state, const at::Tensor& kv0,
                                    const at::Tensor& k_sum0) {
  LolcatsWindowParams wp;
  const FeatureMaps& maps = weights.maps;
  if (!detail::KernelElementType(q.scalar_type(), &wp.type)) return std::nullopt;
  wp.batch = dims.batch;
  wp.heads = dims.q_heads;
  wp.kv_heads = dims.kv_heads;
  wp.length = dims.length;
  wp.head_dim = dims.head_dim;
  wp.window = options.window;
  wp.scale = static_cast<float>(1.0 / std::sqrt(double(dims.head_dim)));
  if (dims.length == 0 || options.window_kind != WindowKind::kSliding ||
      !LolcatsWindowSupported(wp)) {
    return std::nullopt;
  }
  const c10::NoGradGuard no_grad;
  const c10::cuda::CUDAGuard guard(q.device());
  KernelRun run;
  const at::Tensor gate = at::sigmoid(weights.window_logit.to(at::kFloat)).contiguous();
  const bool linear_part = dims.length > options.window || kv0.defined();
  // Hedgehog maps in bf16 with the 64-token window: one kernel, the window
  // fused into the chunked kernel's output pass.
  if (linear_part && maps.kind == FeatureMapKind::kHedgehog &&
      q.scalar_type() == at::kBFloat16 && options.window == kFusedWindow) {
    detail::CudaLinearInputs in;
    in.phi_q = q;
    in.phi_k = k;
    in.v = v;
    in.q_weight = maps.q_weight;
    in.k_weight = maps.k_weight;
    in.key_delay = options.window;
    in.kv0 = kv0;
    in.k_sum0 = k_sum0;
    in.window_gate = gate;
    in.want_state = want_state;
    if ((run.lin = detail::ChunkedCausalLinearCuda(in))) {
      run.y = run.lin->y;
      return run;
    }
  }
  // Linear part: keys j <= i - W, i.e. the causal linear attention of the
  // key stream delayed by W; its final state is the prefill state.
  if (linear_part) {
    detail::CudaLinearInputs in;
    in.v = v;
    in.key_delay = options.window;
    in.kv0 = kv0;
    in.k_sum0 = k_sum0;
    in.want_y = false;
    in.want_num_den = true;
    in.num_in_input_dtype = true;  // the window kernel reads it once
    in.want_state = want_state;
    run.lin = detail::ChunkedCausalLinearOnMapsCuda(in, maps, q, k, dims.q_heads);
    if (!run.lin) return std::nullopt;
  }
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  run.y = at::empty(q.sizes(), q.options());
  wp.q = qc.data_ptr();
  wp.k = kc.data_ptr();
  wp.v = vc.data_ptr();
  wp.gate = gate.data_ptr<float>();
  wp.lin_num = run.lin ? run.lin->num.data_ptr() : nullptr;
  wp.lin_num_bf16 = run.lin && run.lin->num.scalar_type() == at::kBFloat16;
  wp.lin_den = run.lin ? run.lin->den.data_ptr<float>() : nullptr;
  wp.y = run.y.data_ptr();
  wp.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLolcatsWindow(wp);
  TORCH_CHECK(err == nullptr, op, ": CUDA launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  return run;
}

}  // namespace

std::optional<PrefillResult> PrefillCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options, bool want_state) {
  const FeatureMaps& maps = weights.maps;
  if (!q.defined() ||
      !detail::CudaKernelApplies(
          q.device(), {&q, &k, &v, &maps.q_weight, &maps.k_weight, &weights.window_logit})) {
    return std::nullopt;
  }
  const detail::QkvDims dims = detail::CheckQkv(op, q, k, v);
  CheckWeights(op, dims, q.device(), weights, options);
  std::optional<KernelRun> run =
      RunKernels(op, q, k, v, weights, options, dims, want_state, {}, {});
  if (!run) return std::nullopt;
  PrefillResult out;
  out.y = run->y;
  if (want_state) {
    const int64_t f = FeatureDim(maps, dims.head_dim);
    const at::TensorOptions f32 = q.options().dtype(at::kFloat);
    out.state.kv =
        run->lin ? run->lin->kv : at::zeros({dims.batch, dims.q_heads, f, dims.head_dim}, f32);
    out.state.k_sum = run->lin ? run->lin->k_sum : at::zeros({dims.batch, dims.q_heads, f}, f32);
    const int64_t slots = WindowSlots(options);
    out.state.k_window = detail::RingFromSequence(k, slots);
    out.state.v_window = detail::RingFromSequence(v, slots);
    out.state.position = at::full({dims.batch}, dims.length, q.options().dtype(at::kLong));
  }
  return out;
}

std::optional<PrefillResult> ContinueCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const Weights& weights,
                                          const Options& options, bool want_state,
                                          const State& initial, int64_t p0) {
  const FeatureMaps& maps = weights.maps;
  ElementType type;
  if (!q.defined() || q.size(2) == 0 || options.window_kind != WindowKind::kSliding ||
      !detail::KernelElementType(q.scalar_type(), &type) ||
      !detail::CudaKernelApplies(
          q.device(), {&q, &k, &v, &maps.q_weight, &maps.k_weight, &weights.window_logit,
                       &initial.kv, &initial.k_sum, &initial.k_window, &initial.v_window}) ||
      initial.k_window.scalar_type() != k.scalar_type() ||
      initial.v_window.scalar_type() != v.scalar_type()) {
    return std::nullopt;
  }
  // The extended sequence E of the LibTorch Continue (lolcats_prefill.cc):
  // the ring's keys not yet in the linear state, with zero queries, then the
  // prompt; the linear part starts from the state.
  const int64_t t = q.size(2);
  const int64_t s0 = internal::Spec(options).Start(p0 - 1);
  const int64_t ctx = p0 - s0;
  const at::Tensor q_ctx = at::zeros({q.size(0), q.size(1), ctx, q.size(3)}, q.options());
  const at::Tensor qe = at::cat({q_ctx, q}, 2);
  const at::Tensor ke = at::cat({detail::RingSequence(initial.k_window, s0, p0), k}, 2);
  const at::Tensor ve = at::cat({detail::RingSequence(initial.v_window, s0, p0), v}, 2);
  const detail::QkvDims dims = detail::CheckQkv(op, qe, ke, ve);
  std::optional<KernelRun> run =
      RunKernels(op, qe, ke, ve, weights, options, dims, want_state, initial.kv, initial.k_sum);
  if (!run) return std::nullopt;
  PrefillResult out;
  out.y = run->y.narrow(2, ctx, t).contiguous();
  if (want_state) {
    // E's keys before Start(p0 + T - 1) have left the window: in lin's state.
    out.state.kv = run->lin->kv.to(initial.kv.scalar_type());
    out.state.k_sum = run->lin->k_sum.to(initial.k_sum.scalar_type());
    out.state.k_window = detail::RingAppend(initial.k_window, p0, k);
    out.state.v_window = detail::RingAppend(initial.v_window, p0, v);
    out.state.position = initial.position + t;
  }
  return out;
}

std::optional<at::Tensor> DecodeStepCuda(State& state, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options) {
  LolcatsDecodeParams p;
  const FeatureMaps& maps = weights.maps;
  if (!detail::KernelElementType(q.scalar_type(), &p.type) ||
      !detail::CudaKernelApplies(
          q.device(), {&q, &k, &v, &state.kv, &state.k_sum, &state.k_window, &state.v_window,
                       &state.position, &maps.q_weight, &maps.k_weight, &weights.window_logit}) ||
      options.window_kind != WindowKind::kSliding || state.kv.scalar_type() != at::kFloat ||
      state.k_sum.scalar_type() != at::kFloat || state.k_window.scalar_type() != q.scalar_type() ||
      state.v_window.scalar_type() != q.scalar_type() || !state.kv.is_contiguous() ||
      !state.k_sum.is_contiguous() || !state.k_window.is_contiguous() ||
      !state.v_window.is_contiguous() || !state.position.is_contiguous()) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const bool hedgehog = maps.kind == FeatureMapKind::kHedgehog;
  detail::DecodeMapWeights w;
  if (hedgehog) {
    w = detail::ToDecodeMapWeights(maps.q_weight, maps.k_weight);
    p.weight_type = w.type;
  }
  p.batch = q.size(0);
  p.heads = q.size(1);
  p.kv_heads = k.size(1);
  p.head_dim = q.size(3);
  p.feature_dim = state.kv.size(2);
  p.window = options.window;
  p.scale = static_cast<float>(1.0 / std::sqrt(double(p.head_dim)));
  p.q_weight = hedgehog ? w.q.data_ptr() : nullptr;
  p.k_weight = hedgehog ? w.k.data_ptr() : nullptr;
  p.k_weight_heads = hedgehog ? w.k.size(0) : 0;
  // A float32 or bf16 logit is read as stored: a cast here would be a kernel
  // per layer per decode step. Other dtypes (float64 in tests) are cast.
  at::Tensor logit = weights.window_logit;
  if (!detail::KernelElementType(logit.scalar_type(), &p.logit_type)) {
    logit = logit.to(at::kFloat);
    p.logit_type = ElementType::kF32;
  }
  logit = logit.contiguous();
  p.window_logit = logit.data_ptr();
  p.column_splits = detail::DecodeColumnSplits(p.batch, p.heads, p.head_dim);
  if (!LolcatsDecodeSupported(p)) return std::nullopt;
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  at::Tensor y = at::empty(q.sizes(), q.options());
  const at::Tensor evicted = at::empty(state.k_sum.sizes(), state.k_sum.options());
  p.evicted_features = evicted.data_ptr<float>();
  p.kv = state.kv.data_ptr<float>();
  p.k_sum = state.k_sum.data_ptr<float>();
  p.k_window = state.k_window.data_ptr();
  p.v_window = state.v_window.data_ptr();
  p.position = state.position.data_ptr<int64_t>();
  p.q = qc.data_ptr();
  p.k = kc.data_ptr();
  p.v = vc.data_ptr();
  p.y = y.data_ptr();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLolcatsDecode(p);
  TORCH_CHECK(err == nullptr, "lolcats::DecodeStep: CUDA launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  return y;
}

}  // namespace linearize::kernels::lolcats::internal
