// Lizard parallel form (the entry point) and prefill.
//  gated branch: chunked gated linear attention
//    (kernels/linear_attention/chunked_linear.h), relative decays per chunk.
//  window branch: per chunk of C queries, scores against a band of C + W - 1
//    keys (kernels/linear_attention/sliding_window.h) plus the sink logits,
//    normalised on its own.
// Memory O(T (C + W)); differentiable by plain LibTorch autograd (in
// training on CUDA, both branches take the backward kernels where they apply).
// A prefill that continues a state starts the gated branch from it and runs
// the window band over the ring's recent keys followed by the prompt
// (Continue below).
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/hybrid_state.h"
#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lizard/lizard_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/feature_map/hedgehog_grad.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/chunked_linear_grad.h"
#include "kernels/lizard/lizard_cuda.h"
#include "kernels/lizard/lizard_grad.h"
#endif

namespace linearize::kernels::lizard {
namespace {

// Window branch of queries qw [B, H, T, D] over keys kw and values v of the
// same positions (all expanded to the query heads, compute dtype).
at::Tensor WindowBranch(const at::Tensor& qw, const at::Tensor& kw, const at::Tensor& v,
                        const at::Tensor& meta_logits, const Options& options) {
  const detail::WindowBand band =
      detail::BuildWindowBand(qw, kw, v, detail::WindowSpec{options.window, false}, options.chunk,
                              1.0 / std::sqrt(double(qw.size(3))));
  const at::Tensor& s = band.scores;  // [B, H, N, C, L]
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor zero = at::zeros({}, s.options());
  const at::Tensor meta = meta_logits.unsqueeze(2).expand(
      {s.size(0), s.size(1), s.size(2), s.size(3), meta_logits.size(3)});  // [B, H, N, C, M]
  const at::Tensor c =
      at::amax(at::cat({at::where(band.mask, s, neg_inf), meta}, -1), {-1}, /*keepdim=*/true)
          .detach();
  const at::Tensor e = at::where(band.mask, at::exp(at::where(band.mask, s, zero) - c), zero);
  const at::Tensor den = e.sum(-1, /*keepdim=*/true) + at::exp(meta - c).sum(-1, /*keepdim=*/true);
  return detail::UnChunk(at::matmul(e, band.values) / den, qw.size(2));
}

#ifdef LINEARIZE_WITH_CUDA
// A training forward (no state) whose window the kernels do not cover (no
// sinks, or W > 128, M > 8): the gated branch still on its kernels with the
// maps inside, whose logits' gradients stay float32 (not through bf16
// features and their gradients), and the window branch in LibTorch.
std::optional<at::Tensor> GatedKernelsBesideLibTorchWindow(const char* op, const Inputs& in,
                                                           const Weights& weights,
                                                           const Options& options) {
  if (weights.maps.kind != FeatureMapKind::kHedgehog || !in.q.is_cuda()) return std::nullopt;
  const int64_t hq = internal::Check(op, in, weights, options).q_heads;
  const std::optional<detail::NormalizedLinear> gated =
      internal::GatedTrainCuda(in, weights, options, /*pass_v=*/false);
  if (!gated) return std::nullopt;
  const at::ScalarType ct = detail::ComputeType(in.q.scalar_type());
  const internal::WindowQk w = internal::ExpandWindowQk(in, hq);
  const at::Tensor meta = weights.meta_logits.to(ct).view({1, hq, 1, weights.meta_logits.size(1)});
  const at::Tensor y_win =
      WindowBranch(w.q, w.k, detail::ExpandKvHeads(in.v.to(ct), hq), meta, options);
  return (gated->y + weights.alpha.to(ct).view({1, hq, 1, 1}) * y_win).to(in.q.scalar_type());
}
#endif

// Continues `initial` (every row at position p0 > 0; see Prefill in the
// header). Gated branch: the chunked form from the initial kv / k_sum. Window
// branch: the band over E = the ring's keys of positions s0 = Start(p0) ..
// p0 - 1 (with zero queries whose rows are dropped), then the prompt; every
// prompt query's window starts at or after s0, so E's windows shifted by s0
// are the absolute ones.
PrefillResult Continue(const internal::Prepared& p, const Inputs& in, const Options& options,
                       bool want_state, const State& initial, int64_t p0) {
  const int64_t t = p.dims.length, hq = p.dims.q_heads;
  PrefillResult out;
  if (t == 0) {
    out.y = at::empty_like(in.q);
    if (want_state) {
      out.state = State{initial.kv.detach().clone(), initial.k_sum.detach().clone(),
                        initial.k_window.detach().clone(), initial.v_window.detach().clone(),
                        initial.position.clone()};
    }
    return out;
  }
  const at::ScalarType ct = p.v.scalar_type();
  const detail::LinearTerms gla =
      detail::ChunkedCausalLinear(p.phi_q, p.phi_k, p.v, p.log_gamma, options.chunk,
                                  initial.kv.detach().to(ct), initial.k_sum.detach().to(ct));
  const at::Tensor y_gla = gla.num / (gla.den.unsqueeze(-1) + options.eps);

  const int64_t s0 = detail::WindowSpec{options.window, false}.Start(p0);
  const int64_t ctx = p0 - s0;  // ring keys in front of the prompt
  const auto ring = [&](const at::Tensor& r) {
    return detail::ExpandKvHeads(detail::RingSequence(r.detach(), s0, p0).to(ct), hq);
  };
  const internal::WindowQk w = internal::ExpandWindowQk(in, hq);
  const at::Tensor q_ctx = at::zeros({w.q.size(0), hq, ctx, w.q.size(3)}, w.q.options());
  const at::Tensor y_win =
      WindowBranch(at::cat({q_ctx, w.q}, 2), at::cat({ring(initial.k_window), w.k}, 2),
                   at::cat({ring(initial.v_window), p.v}, 2), p.meta, options)
          .narrow(2, ctx, t);
  out.y = (y_gla + p.alpha * y_win).to(in.q.scalar_type());
  if (want_state) {
    const at::ScalarType st = initial.kv.scalar_type();  // kept, as DecodeStep keeps it
    out.state.kv = gla.kv.detach().to(st);
    out.state.k_sum = gla.k_sum.detach().to(st);
    out.state.k_window =
        detail::RingAppend(initial.k_window.detach(), p0, internal::WindowK(in).detach());
    out.state.v_window = detail::RingAppend(initial.v_window.detach(), p0, in.v.detach());
    out.state.position = initial.position + t;
  }
  return out;
}

PrefillResult Run(const char* op, const Inputs& in, const Weights& weights, const Options& options,
                  bool want_state, const State* initial) {
#ifdef LINEARIZE_WITH_CUDA
  // A prompt on the CUDA kernels, from the inputs as given (bf16, kv heads),
  // before Prepare expands them.
  if (std::optional<PrefillResult> r =
          internal::PrefillCuda(op, in, weights, options, want_state, initial)) {
    return *std::move(r);
  }
#endif
  std::optional<at::ScalarType> features;
#ifdef LINEARIZE_WITH_CUDA
  // A training forward on the kernels, the maps inside the gated branch's
  // op (lizard_grad.h); where they do not cover it, the branches composed.
  if (!want_state && initial == nullptr) {
    std::optional<at::Tensor> y = internal::TrainCuda(op, in, weights, options);
    if (!y) y = GatedKernelsBesideLibTorchWindow(op, in, weights, options);
    if (y) {
      PrefillResult out;
      out.y = *std::move(y);
      return out;
    }
    if (detail::FeaturesTrainOnKernels(in.q, in.k, in.v, weights.maps)) features = at::kBFloat16;
  }
#endif
  const internal::Prepared p = internal::Prepare(op, in, weights, options, features);
  const detail::QkvDims& dims = p.dims;
  if (initial != nullptr) {
    detail::CheckHybridState(op, *initial, dims, p.phi_q.size(3), options.window, in.q);
    const int64_t p0 = detail::UniformPosition(op, initial->position);
    if (p0 > 0) return Continue(p, in, options, want_state, *initial, p0);
  }
  // From the empty state.
  PrefillResult out;
  if (dims.length == 0) {
    out.y = at::empty_like(in.q);
    if (want_state) {
      out.state = EmptyState(dims.batch, dims.q_heads, dims.kv_heads, p.phi_q.size(3),
                             dims.head_dim, options, in.q.options());
    }
    return out;
  }
  // The gated branch takes the CUDA kernel (chunked_linear_cuda.cu) when it
  // covers the inputs (here when PrefillCuda above did not take the whole
  // prompt); otherwise the LibTorch form, which runs on any device and whose
  // chunked products train on the backward kernels (chunked_linear_grad.h).
  // The window branch trains on its kernels (lizard_grad.h) when they cover
  // the inputs, else it is LibTorch.
  // Training with no state wanted normalises the gated branch in its kernels
  // too (chunked_linear_grad.h).
  std::optional<detail::LinearTerms> cuda_gla;
  std::optional<at::Tensor> y_gla_trained, y_win;
#ifdef LINEARIZE_WITH_CUDA
  cuda_gla = detail::ChunkedCausalLinearTermsCuda(p.phi_q, p.phi_k, p.v, p.log_gamma, want_state);
  at::Tensor v_pass;  // without GQA, v passes through the gated kernels to the window
  if (!cuda_gla && !want_state) {
    // With grouped-query heads the kernels read phi_k, v and the gates at
    // the kv heads, so their gradients sum over each group in float32 inside
    // (not as bf16 per-query-head terms through the expansion's backward).
    const bool grouped = p.phi_k_kv.defined() && dims.kv_heads < dims.q_heads;
    if (std::optional<detail::NormalizedLinear> lin = detail::NormalizedCausalLinearTrainCuda(
            p.phi_q, grouped ? p.phi_k_kv : p.phi_k, grouped ? in.v.to(p.v.scalar_type()) : p.v,
            grouped ? in.log_gamma.to(p.log_gamma.scalar_type()) : p.log_gamma, options.eps,
            dims.kv_heads == dims.q_heads)) {
      y_gla_trained = lin->y;
      v_pass = lin->v_pass;
    }
  }
  if (y_gla_trained) {  // both branches and their sum in the window kernel
    if (std::optional<at::Tensor> y = internal::WindowBranchTrainCuda(
            internal::WindowQ(in), internal::WindowK(in), v_pass.defined() ? v_pass : in.v,
            weights.meta_logits, options.window, weights.alpha.reshape({-1}), *y_gla_trained)) {
      out.y = y->to(in.q.scalar_type());
      return out;
    }
  }
  y_win = internal::WindowBranchTrainCuda(internal::WindowQ(in), internal::WindowK(in), in.v,
                                          weights.meta_logits, options.window);
#endif
  detail::LinearTerms gla;
  if (!y_gla_trained) {
    gla = cuda_gla ? *cuda_gla
                   : detail::ChunkedCausalLinear(p.phi_q, p.phi_k, p.v, p.log_gamma, options.chunk);
  }
  const at::Tensor y_gla =
      y_gla_trained ? *y_gla_trained : gla.num / (gla.den.unsqueeze(-1) + options.eps);
  if (!y_win) {
    const internal::WindowQk w = internal::ExpandWindowQk(in, dims.q_heads);
    y_win = WindowBranch(w.q, w.k, p.v.to(w.q.scalar_type()), p.meta, options);
  }
  if (y_gla_trained && y_win->scalar_type() == at::kBFloat16) {
    // Both branches from the training kernels: combined in bfloat16 (alpha
    // rounded to bfloat16, as autocast rounds a matmul's weights), no float32
    // copies of y or of its gradient. (Not addcmul: autocast would promote it.)
    out.y = (*y_gla_trained + *y_win * p.alpha.to(at::kBFloat16)).to(in.q.scalar_type());
  } else {
    out.y = (y_gla + p.alpha * *y_win).to(in.q.scalar_type());
  }
  if (want_state) {
    out.state.kv = gla.kv.detach();
    out.state.k_sum = gla.k_sum.detach();
    out.state.k_window = detail::RingFromSequence(internal::WindowK(in).detach(), options.window);
    out.state.v_window = detail::RingFromSequence(in.v.detach(), options.window);
    out.state.position = at::full({dims.batch}, dims.length, in.q.options().dtype(at::kLong));
  }
  return out;
}

}  // namespace

at::Tensor ForwardParallel(const Inputs& in, const Weights& weights, const Options& options) {
  return Run("lizard::ForwardParallel", in, weights, options, /*want_state=*/false,
             /*initial=*/nullptr)
      .y;
}

PrefillResult Prefill(const Inputs& in, const Weights& weights, const Options& options,
                      const State* initial) {
  return Run("lizard::Prefill", in, weights, options, /*want_state=*/true, initial);
}

}  // namespace linearize::kernels::lizard
