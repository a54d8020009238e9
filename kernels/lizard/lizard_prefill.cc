// Lizard parallel form (the entry point) and prefill.
//  gated branch: chunked gated linear attention
//    (kernels/linear_attention/chunked_linear.h), relative decays per chunk.
//  window branch: per chunk of C queries, scores against a band of C + W - 1
//    keys (kernels/linear_attention/sliding_window.h) plus the sink logits,
//    normalised on its own.
// Memory O(T (C + W)); differentiable by plain LibTorch autograd.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lizard/lizard_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#endif

namespace linearize::kernels::lizard {
namespace {

at::Tensor WindowBranch(const internal::Prepared& p, const Options& options) {
  const detail::WindowBand band =
      detail::BuildWindowBand(p.qw, p.kw, p.v, detail::WindowSpec{options.window, false},
                              options.chunk, 1.0 / std::sqrt(double(p.dims.head_dim)));
  const at::Tensor& s = band.scores;  // [B, H, N, C, L]
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor zero = at::zeros({}, s.options());
  const at::Tensor meta = p.meta.unsqueeze(2).expand(
      {s.size(0), s.size(1), s.size(2), s.size(3), p.meta.size(3)});  // [B, H, N, C, M]
  const at::Tensor c =
      at::amax(at::cat({at::where(band.mask, s, neg_inf), meta}, -1), {-1}, /*keepdim=*/true)
          .detach();
  const at::Tensor e = at::where(band.mask, at::exp(at::where(band.mask, s, zero) - c), zero);
  const at::Tensor den = e.sum(-1, /*keepdim=*/true) + at::exp(meta - c).sum(-1, /*keepdim=*/true);
  return detail::UnChunk(at::matmul(e, band.values) / den, p.dims.length);
}

PrefillResult Run(const char* op, const Inputs& in, const Weights& weights, const Options& options,
                  bool want_state) {
  const internal::Prepared p = internal::Prepare(op, in, weights, options);
  const detail::QkvDims& dims = p.dims;
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
  // covers the inputs; otherwise (and for autograd) the LibTorch form below,
  // which runs on any device. The window branch stays LibTorch.
  std::optional<detail::LinearTerms> cuda_gla;
#ifdef LINEARIZE_WITH_CUDA
  cuda_gla =
      detail::ChunkedCausalLinearTermsCuda(p.phi_q, p.phi_k, p.v, p.log_gamma, want_state);
#endif
  const detail::LinearTerms gla =
      cuda_gla ? *cuda_gla
               : detail::ChunkedCausalLinear(p.phi_q, p.phi_k, p.v, p.log_gamma, options.chunk);
  const at::Tensor y_gla = gla.num / (gla.den.unsqueeze(-1) + options.eps);
  out.y = (y_gla + p.alpha * WindowBranch(p, options)).to(in.q.scalar_type());
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
  return Run("lizard::ForwardParallel", in, weights, options, /*want_state=*/false).y;
}

PrefillResult Prefill(const Inputs& in, const Weights& weights, const Options& options) {
  return Run("lizard::Prefill", in, weights, options, /*want_state=*/true);
}

}  // namespace linearize::kernels::lizard
