// LoLCATs parallel form (the entry point) and prefill.
//  window part: per chunk of C queries, scores against a band of C + Wb - 1
//    keys (kernels/linear_attention/sliding_window.h), masked to the window,
//    c = window max, terms g exp(s - c).
//  linear part, sliding: keys j <= i - W are the causal prefix of the key
//    stream delayed by W tokens, so it is the chunked causal linear attention
//    (kernels/linear_attention/chunked_linear.h) of phi(k), v shifted right by W.
//  linear part, terrace: queries in block b read the sum over blocks <= b - 2,
//    an exclusive prefix sum over W-blocks shifted by one more block.
// Memory O(T (C + W)); differentiable by plain LibTorch autograd.
// A prefill that continues a state runs the same terms over the ring's keys
// not yet in the linear state followed by the prompt (Continue below).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/hybrid_state.h"
#include "kernels/lolcats/lolcats_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/linear_attention/chunked_linear_grad.h"
#include "kernels/lolcats/lolcats_cuda.h"
#include "kernels/lolcats/lolcats_grad.h"
#endif

namespace linearize::kernels::lolcats {
namespace {

struct Terms {
  at::Tensor num;     // [B, H, T, D]
  at::Tensor den;     // [B, H, T, 1]
  at::Tensor v_pass = at::Tensor();  // the kernels' v passed through for the window
};

Terms WindowTerms(const internal::Prepared& p, const Options& options) {
  const detail::WindowBand band =
      detail::BuildWindowBand(p.q, p.k, p.v, internal::Spec(options), options.chunk,
                              1.0 / std::sqrt(double(p.dims.head_dim)));
  const at::Tensor& s = band.scores;  // [B, H, N, C, L]
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor zero = at::zeros({}, s.options());
  const at::Tensor c = at::amax(at::where(band.mask, s, neg_inf), {-1}, /*keepdim=*/true);
  const at::Tensor a =
      p.g.unsqueeze(-1) * at::where(band.mask, at::exp(at::where(band.mask, s, zero) - c), zero);
  const int64_t t = p.dims.length;
  return {detail::UnChunk(at::matmul(a, band.values), t),
          detail::UnChunk(a.sum(-1, /*keepdim=*/true), t)};
}

Terms SlidingLinearTerms(const internal::Prepared& p, int64_t window, int64_t chunk) {
  const int64_t t = p.dims.length;
  if (t <= window) {  // no key is older than the window yet
    return {at::zeros_like(p.v), at::zeros({p.v.size(0), p.v.size(1), t, 1}, p.v.options())};
  }
#ifdef LINEARIZE_WITH_CUDA
  // Training on the GPU: the kernels delay the keys themselves. Without
  // GQA, p.v is v itself (in the compute dtype): it passes through them to the
  // window, whose gradient of v the backward kernel then adds into its own.
  const bool pass_v = p.dims.kv_heads == p.dims.q_heads;
  if (std::optional<detail::LinearTerms> lt = detail::ChunkedCausalLinearTrainCuda(
          p.phi_q, p.phi_k, p.v, at::Tensor(), window, pass_v)) {
    return {lt->num, lt->den.unsqueeze(-1), lt->v_pass};
  }
#endif
  const auto delay = [&](const at::Tensor& x) {
    return at::constant_pad_nd(x, {0, 0, window, 0}).narrow(2, 0, t);
  };
  const detail::LinearTerms lt =
      detail::ChunkedCausalLinear(p.phi_q, delay(p.phi_k), delay(p.v), at::Tensor(), chunk);
  return {lt.num, lt.den.unsqueeze(-1)};
}

Terms TerraceLinearTerms(const internal::Prepared& p, int64_t window) {
  const int64_t b = p.v.size(0), h = p.v.size(1), t = p.dims.length;
  const int64_t f = p.phi_q.size(3), d = p.v.size(3);
  const int64_t nb = (t + window - 1) / window;
  const int64_t pad = nb * window - t;
  const auto blocks = [&](const at::Tensor& x) {
    return at::constant_pad_nd(x, {0, 0, 0, pad}).reshape({b, h, nb, window, x.size(3)});
  };
  const at::Tensor qb = blocks(p.phi_q), kb = blocks(p.phi_k), vb = blocks(p.v);
  const at::Tensor u = at::matmul(kb.transpose(-1, -2), vb);  // [B, H, NB, F, D]
  const at::Tensor z = kb.sum(-2);                            // [B, H, NB, F]
  // Block b reads sum_{b' <= b - 2}: two leading zero blocks, then the cumsum.
  const int64_t lead = std::min<int64_t>(2, nb);
  const at::Tensor s_prev =
      at::cat({at::zeros({b, h, lead, f, d}, u.options()), u.cumsum(2).narrow(2, 0, nb - lead)}, 2);
  const at::Tensor z_prev =
      at::cat({at::zeros({b, h, lead, f}, z.options()), z.cumsum(2).narrow(2, 0, nb - lead)}, 2);
  const at::Tensor num = at::matmul(qb, s_prev);                // [B, H, NB, W, D]
  const at::Tensor den = at::matmul(qb, z_prev.unsqueeze(-1));  // [B, H, NB, W, 1]
  return {detail::UnChunk(num, t), detail::UnChunk(den, t)};
}

// Continues `initial` (every row at position p0 > 0; see Prefill in the
// header). The chunked form runs over the extended sequence E = the keys not
// yet in the linear state (positions s0 = Start(p0 - 1) .. p0 - 1, from the
// ring, with zero queries whose rows are dropped), then the prompt. E's window
// sets and linear sets, shifted by s0, are the absolute ones: for sliding
// windows because every prompt query's window starts at or after s0, for
// terrace because s0 is a multiple of W, so E's blocks are the absolute blocks.
PrefillResult Continue(const char* op, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const Weights& weights, const Options& options,
                       bool want_state, const State& initial, int64_t p0) {
  const detail::WindowSpec spec = internal::Spec(options);
  const int64_t t = q.size(2);
  PrefillResult out;
  if (t == 0) {
    out.y = at::empty_like(q);
    if (want_state) {
      out.state = State{initial.kv.detach().clone(), initial.k_sum.detach().clone(),
                        initial.k_window.detach().clone(), initial.v_window.detach().clone(),
                        initial.position.clone()};
    }
    return out;
  }
  const int64_t s0 = spec.Start(p0 - 1);
  const int64_t ctx = p0 - s0;  // ring keys in front of the prompt
  const at::Tensor ring_k = detail::RingSequence(initial.k_window.detach(), s0, p0);
  const at::Tensor ring_v = detail::RingSequence(initial.v_window.detach(), s0, p0);
  const at::Tensor q_ctx = at::zeros({q.size(0), q.size(1), ctx, q.size(3)}, q.options());
  const internal::Prepared p =
      internal::Prepare(op, at::cat({q_ctx, q}, 2), at::cat({ring_k.to(k.scalar_type()), k}, 2),
                        at::cat({ring_v.to(v.scalar_type()), v}, 2), weights, options);
  const Terms win = WindowTerms(p, options);
  const Terms lin = options.window_kind == WindowKind::kTerrace
                        ? TerraceLinearTerms(p, options.window)
                        : SlidingLinearTerms(p, options.window, options.chunk);
  // Keys before s0 are in the initial linear state, which every prompt query reads.
  const at::ScalarType ct = p.q.scalar_type();
  const at::Tensor kv0 = initial.kv.detach().to(ct);
  const at::Tensor k_sum0 = initial.k_sum.detach().to(ct);
  const auto prompt = [&](const at::Tensor& x) { return x.narrow(2, ctx, t); };
  const at::Tensor phi_q = prompt(p.phi_q);
  const at::Tensor num = prompt(win.num) + prompt(lin.num) + at::matmul(phi_q, kv0);
  const at::Tensor den =
      prompt(win.den) + prompt(lin.den) + at::matmul(phi_q, k_sum0.unsqueeze(-1));
  out.y = (num / den).to(q.scalar_type());
  if (want_state) {
    // E's keys before Start(p0 + T - 1) have left the window.
    const int64_t older = spec.Start(p0 + t - 1) - s0;
    const at::Tensor pk = p.phi_k.narrow(2, 0, older).detach();
    const at::Tensor pv = p.v.narrow(2, 0, older).detach();
    const at::ScalarType st = initial.kv.scalar_type();  // kept, as DecodeStep keeps it
    out.state.kv = (kv0 + at::matmul(pk.transpose(-1, -2), pv)).to(st);
    out.state.k_sum = (k_sum0 + pk.sum(2)).to(st);
    out.state.k_window = detail::RingAppend(initial.k_window.detach(), p0, k.detach());
    out.state.v_window = detail::RingAppend(initial.v_window.detach(), p0, v.detach());
    out.state.position = initial.position + t;
  }
  return out;
}

PrefillResult Run(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const Weights& weights, const Options& options, bool want_state,
                  const State* initial) {
  if (initial != nullptr) {
    const detail::QkvDims dims = detail::CheckQkv(op, q, k, v);
    internal::CheckWeights(op, dims, q.device(), weights, options);
    detail::CheckHybridState(op, *initial, dims, FeatureDim(weights.maps, dims.head_dim),
                             WindowSlots(options), q);
    const int64_t p0 = detail::UniformPosition(op, initial->position);
    if (p0 > 0) {
#ifdef LINEARIZE_WITH_CUDA
      if (std::optional<PrefillResult> r =
              internal::ContinueCuda(op, q, k, v, weights, options, want_state, *initial, p0)) {
        return std::move(*r);
      }
#endif
      return Continue(op, q, k, v, weights, options, want_state, *initial, p0);
    }
  }
  // From the empty state.
#ifdef LINEARIZE_WITH_CUDA
  // CUDA kernels (lolcats_cuda.h) for the inputs they cover; they check the
  // arguments as Prepare does, and compute the features themselves.
  if (std::optional<PrefillResult> r =
          internal::PrefillCuda(op, q, k, v, weights, options, want_state)) {
    return std::move(*r);
  }
#endif
  std::optional<at::ScalarType> compute;
#ifdef LINEARIZE_WITH_CUDA
  if (!want_state && internal::TrainsOnKernels(q, k, v, weights, options)) {
    // One forward kernel where it covers the call, else the composed kernels in bf16.
    if (std::optional<at::Tensor> y = internal::FusedTrainCuda(op, q, k, v, weights, options)) {
      PrefillResult out;
      out.y = y->to(q.scalar_type());
      return out;
    }
    compute = at::kBFloat16;
  }
#endif
  const internal::Prepared p = internal::Prepare(op, q, k, v, weights, options, compute);
  const detail::QkvDims& dims = p.dims;
  PrefillResult out;
  if (dims.length == 0) {
    out.y = at::empty_like(q);
    if (want_state) {
      out.state = EmptyState(dims.batch, dims.q_heads, dims.kv_heads, p.phi_q.size(3),
                             dims.head_dim, options, q.options());
    }
    return out;
  }
  // CUDA tensors the kernels do not cover take the LibTorch form below, which
  // runs on any device. Training on the GPU (autograd, bf16 or autocast)
  // runs the linear part's chunked form on the kernels (chunked_linear_grad.h)
  // and the window terms too (lolcats_grad.h).
  const Terms lin = options.window_kind == WindowKind::kTerrace
                        ? TerraceLinearTerms(p, options.window)
                        : SlidingLinearTerms(p, options.window, options.chunk);
  std::optional<at::Tensor> y;
#ifdef LINEARIZE_WITH_CUDA
  if (options.window_kind == WindowKind::kSliding) {
    // q, k, v as given (kv heads; each as the maps or the linear kernels
    // pass it through when they do): the kernel reads them in bfloat16.
    y = internal::WindowCombineTrainCuda(p.q_window.defined() ? p.q_window : q,
                                         p.k_window.defined() ? p.k_window : k,
                                         lin.v_pass.defined() ? lin.v_pass : v,
                                         p.g.reshape({-1}), lin.num, lin.den.squeeze(-1),
                                         options.window);
  }
#endif
  if (!y) {
    const Terms win = WindowTerms(p, options);
    y = (win.num + lin.num) / (win.den + lin.den);
  }
  out.y = y->to(q.scalar_type());
  if (want_state) {
    // Keys before Start(T - 1) have left the window: they form the linear state.
    const int64_t older = internal::Spec(options).Start(dims.length - 1);
    const at::Tensor pk = p.phi_k.narrow(2, 0, older);
    const at::Tensor pv = p.v.narrow(2, 0, older);
    const int64_t slots = WindowSlots(options);
    out.state.kv = at::matmul(pk.transpose(-1, -2), pv).detach();
    out.state.k_sum = pk.sum(2).detach();
    out.state.k_window = detail::RingFromSequence(k.detach(), slots);
    out.state.v_window = detail::RingFromSequence(v.detach(), slots);
    out.state.position = at::full({dims.batch}, dims.length, q.options().dtype(at::kLong));
  }
  return out;
}

}  // namespace

int64_t WindowSlots(const Options& options) { return internal::Spec(options).Buffer(); }

at::Tensor ForwardParallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const Weights& weights, const Options& options) {
  return Run("lolcats::ForwardParallel", q, k, v, weights, options, /*want_state=*/false,
             /*initial=*/nullptr)
      .y;
}

PrefillResult Prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const Weights& weights, const Options& options, const State* initial) {
  return Run("lolcats::Prefill", q, k, v, weights, options, /*want_state=*/true, initial);
}

}  // namespace linearize::kernels::lolcats
