#include "kernels/linear_attention/chunked_linear.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <vector>

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/linear_attention/chunked_linear_grad.h"
#endif

namespace linearize::kernels::detail {
namespace {

// seg[..., i, j] = sum_{j < s <= i} a[..., s] for a [..., C] (0 where j >= i),
// summed directly rather than as a difference of cumulative sums: no
// cancellation, and a gate of exactly 0 (log -inf) stays -inf instead of NaN.
at::Tensor SegmentSums(const at::Tensor& a) {
  const int64_t c = a.size(-1);
  const at::Tensor after_j = at::ones({c, c}, a.options().dtype(at::kBool)).tril(-1);  // s > j
  std::vector<int64_t> sizes = a.sizes().vec();
  sizes.push_back(c);
  const at::Tensor rows = a.unsqueeze(-1).expand(sizes);  // rows[..., s, j] = a_s
  return at::where(after_j, rows, at::zeros({}, a.options())).cumsum(-2);
}

// [B, H, T, X] -> [B, H, N, C, X], zero-padding T up to N * C.
at::Tensor ToChunks(const at::Tensor& x, int64_t chunks, int64_t chunk) {
  const int64_t pad = chunks * chunk - x.size(2);
  const at::Tensor padded = pad == 0 ? x : at::constant_pad_nd(x, {0, 0, 0, pad});
  return padded.reshape({x.size(0), x.size(1), chunks, chunk, x.size(3)});
}

// [B, H, N, C, X] -> [B, H, T, X]
at::Tensor FromChunks(const at::Tensor& x, int64_t length) {
  const at::Tensor flat = x.reshape({x.size(0), x.size(1), x.size(2) * x.size(3), x.size(4)});
  return flat.narrow(2, 0, length);
}

}  // namespace

LinearTerms ChunkedCausalLinear(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                const at::Tensor& v, const at::Tensor& log_gamma, int64_t chunk,
                                const at::Tensor& kv0, const at::Tensor& k_sum0) {
  TORCH_CHECK(kv0.defined() == k_sum0.defined(),
              "ChunkedCausalLinear: pass both kv0 and k_sum0 or neither");
#ifdef LINEARIZE_WITH_CUDA
  // Training on the GPU: the CUDA forward and backward kernels as one
  // differentiable op (chunked_linear_grad.h), from the empty state.
  if (!kv0.defined()) {
    if (std::optional<LinearTerms> t = ChunkedCausalLinearTrainCuda(phi_q, phi_k, v, log_gamma)) {
      return std::move(*t);
    }
  }
#endif
  const int64_t length = phi_q.size(2);
  const int64_t c = std::min(chunk, length);
  const int64_t n = (length + c - 1) / c;
  const at::Tensor q = ToChunks(phi_q, n, c);  // [B, H, N, C, F]
  const at::Tensor k = ToChunks(phi_k, n, c);
  const at::Tensor vc = ToChunks(v, n, c);  // [B, H, N, C, D]
  const at::Tensor causal = at::ones({c, c}, phi_q.options().dtype(at::kBool)).tril();

  at::Tensor a = at::matmul(q, k.transpose(-1, -2));  // [B, H, N, C, C]
  at::Tensor k_in = k;                                // keys as they enter the chunk state
  at::Tensor q_decay, chunk_decay;                    // exp(b_i) [B,H,N,C], exp(b_last) [B,H,N]
  if (log_gamma.defined()) {
    const int64_t pad = n * c - length;
    const at::Tensor g = pad == 0 ? log_gamma : at::constant_pad_nd(log_gamma, {0, pad});
    const at::Tensor lg = g.reshape({g.size(0), g.size(1), n, c});  // [B, H, N, C]
    const at::Tensor b = lg.cumsum(-1);                             // b_i = sum_{s<=i}
    // sum_{j < s < C}: reverse cumsum of the gates shifted left by one.
    const at::Tensor after =
        at::constant_pad_nd(lg.narrow(-1, 1, c - 1), {0, 1}).flip(-1).cumsum(-1).flip(-1);
    const at::Tensor seg = SegmentSums(lg);  // b_i - b_j for j <= i, summed directly
    const at::Tensor zero = at::zeros({}, a.options());
    // The decays in the features' dtype (gates may come in float32 beside
    // bfloat16 features).
    const at::ScalarType ft = a.scalar_type();
    a = a * at::where(causal, at::exp(at::where(causal, seg, zero)), zero).to(ft);
    q_decay = at::exp(b).to(ft);
    chunk_decay = at::exp(b.select(-1, c - 1)).to(ft);
    k_in = k * at::exp(after).unsqueeze(-1).to(ft);
  } else {
    a = at::where(causal, a, at::zeros_like(a));
  }
  at::Tensor num = at::matmul(a, vc);  // [B, H, N, C, D]
  at::Tensor den = a.sum(-1);          // [B, H, N, C]

  const at::Tensor u = at::matmul(k_in.transpose(-1, -2), vc);  // [B, H, N, F, D]
  const at::Tensor w = k_in.sum(-2);                            // [B, H, N, F]
  at::Tensor s_prev, z_prev, s_last, z_last;  // state before each chunk, after all
  if (chunk_decay.defined()) {
    // The recurrence starts from the initial state: chunk 0's queries read it
    // decayed by exp(b_i), and every chunk decays it on.
    at::Tensor s = kv0.defined() ? kv0 : at::zeros_like(u.select(2, 0));
    at::Tensor z = k_sum0.defined() ? k_sum0 : at::zeros_like(w.select(2, 0));
    std::vector<at::Tensor> ss, zs;
    ss.reserve(n);
    zs.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      ss.push_back(s);
      zs.push_back(z);
      const at::Tensor d = chunk_decay.select(2, i);  // [B, H]
      s = s * d.unsqueeze(-1).unsqueeze(-1) + u.select(2, i);
      z = z * d.unsqueeze(-1) + w.select(2, i);
    }
    s_prev = at::stack(ss, 2);
    z_prev = at::stack(zs, 2);
    s_last = s;
    z_last = z;
  } else {
    // Exclusive prefix sums over chunks (a cat, not cumsum - u, to avoid cancellation).
    const at::Tensor s_cum = u.cumsum(2);
    const at::Tensor z_cum = w.cumsum(2);
    s_prev = at::cat({at::zeros_like(u.narrow(2, 0, 1)), s_cum.narrow(2, 0, n - 1)}, 2);
    z_prev = at::cat({at::zeros_like(w.narrow(2, 0, 1)), z_cum.narrow(2, 0, n - 1)}, 2);
    s_last = s_cum.select(2, n - 1);
    z_last = z_cum.select(2, n - 1);
    if (kv0.defined()) {  // every chunk reads the initial state unchanged
      s_prev = s_prev + kv0.unsqueeze(2);
      z_prev = z_prev + k_sum0.unsqueeze(2);
      s_last = s_last + kv0;
      z_last = z_last + k_sum0;
    }
  }
  at::Tensor inter_num = at::matmul(q, s_prev);                            // [B,H,N,C,D]
  at::Tensor inter_den = at::matmul(q, z_prev.unsqueeze(-1)).squeeze(-1);  // [B,H,N,C]
  if (q_decay.defined()) {
    inter_num = inter_num * q_decay.unsqueeze(-1);
    inter_den = inter_den * q_decay;
  }
  num = num + inter_num;
  den = den + inter_den;
  return LinearTerms{FromChunks(num, length), FromChunks(den.unsqueeze(-1), length).squeeze(-1),
                     s_last, z_last};
}

}  // namespace linearize::kernels::detail
