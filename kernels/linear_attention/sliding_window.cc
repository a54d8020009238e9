#include "kernels/linear_attention/sliding_window.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace linearize::kernels::detail {

int64_t WindowSpec::Start(int64_t i) const {
  if (!terrace) return std::max<int64_t>(0, i - size + 1);
  const int64_t block = i >= 0 ? i / size : -1;  // floor for i >= -1
  return std::max<int64_t>(0, (block - 1) * size);
}

at::Tensor WindowSpec::Start(const at::Tensor& i) const {
  if (!terrace) return at::clamp_min(i - (size - 1), 0);
  return at::clamp_min((at::div(i, size, "floor") - 1) * size, 0);
}

WindowBand BuildWindowBand(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const WindowSpec& spec, int64_t chunk, double scale) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t c = std::min(chunk, t);
  const int64_t n = (t + c - 1) / c;
  const int64_t back = spec.Buffer() - 1;
  const int64_t l = c + back;
  const int64_t pad = n * c - t;
  const at::Tensor qc =
      (pad == 0 ? q : at::constant_pad_nd(q, {0, 0, 0, pad})).reshape({b, h, n, c, d});
  // Pad `back` zero keys in front and the tail up to N*C, then take overlapping
  // windows of length L with stride C: [B, H, N, D, L] -> [B, H, N, L, D].
  const auto band = [&](const at::Tensor& x) {
    return at::constant_pad_nd(x, {0, 0, back, pad}).unfold(2, l, c).transpose(-1, -2);
  };
  const at::Tensor kb = band(k);
  WindowBand out;
  out.values = band(v);
  out.scores = at::matmul(qc, kb.transpose(-1, -2)) * scale;  // [B, H, N, C, L]
  out.chunk = c;
  const auto pos_opts = q.options().dtype(at::kLong);
  const at::Tensor start = at::arange(n, pos_opts).mul(c).view({n, 1, 1});
  const at::Tensor qi = start + at::arange(c, pos_opts).view({1, c, 1});         // [N, C, 1]
  const at::Tensor kj = start - back + at::arange(l, pos_opts).view({1, 1, l});  // [N, 1, L]
  out.mask = at::logical_and(kj >= spec.Start(qi), kj <= qi);
  return out;
}

at::Tensor UnChunk(const at::Tensor& x, int64_t length) {
  return x.reshape({x.size(0), x.size(1), x.size(2) * x.size(3), x.size(4)}).narrow(2, 0, length);
}

at::Tensor RingFromSequence(const at::Tensor& x, int64_t slots) {
  const int64_t t = x.size(2);
  at::Tensor ring = at::zeros({x.size(0), x.size(1), slots, x.size(3)}, x.options());
  const int64_t first = std::max<int64_t>(0, t - slots);
  const at::Tensor pos = at::arange(first, t, x.options().dtype(at::kLong));
  ring.index_copy_(2, at::remainder(pos, slots), x.narrow(2, first, t - first));
  return ring;
}

at::Tensor RingSlotPositions(const at::Tensor& pos, int64_t slots) {
  const at::Tensor p = pos.unsqueeze(1);                               // [B, 1]
  const at::Tensor s = at::arange(slots, pos.options()).unsqueeze(0);  // [1, S]
  return p - at::remainder(p - s, slots);
}

void RingWrite(at::Tensor& ring, const at::Tensor& pos, const at::Tensor& x) {
  const at::Tensor slot = at::remainder(pos, ring.size(2)).view({-1, 1, 1, 1});
  ring.scatter_(2, slot.expand({ring.size(0), ring.size(1), 1, ring.size(3)}),
                x.to(ring.scalar_type()));
}

int64_t UniformPosition(const char* op, const at::Tensor& position) {
  if (position.numel() == 0) return 0;
  const int64_t low = position.min().item<int64_t>();
  const int64_t high = position.max().item<int64_t>();
  TORCH_CHECK(low == high, op, ": the initial state's rows sit at different positions (", low,
              " to ", high, "); a prefill continues one position for the whole batch, so "
              "continue such rows one at a time or decode them token by token");
  return low;
}

at::Tensor RingSequence(const at::Tensor& ring, int64_t from, int64_t to) {
  const at::Tensor pos = at::arange(from, to, ring.options().dtype(at::kLong));
  return ring.index_select(2, at::remainder(pos, ring.size(2)));
}

at::Tensor RingAppend(const at::Tensor& ring, int64_t pos, const at::Tensor& x) {
  const int64_t t = x.size(2), slots = ring.size(2);
  const int64_t first = std::max<int64_t>(0, t - slots);  // earlier tokens are overwritten
  const at::Tensor at_pos = at::arange(pos + first, pos + t, ring.options().dtype(at::kLong));
  at::Tensor out = ring.clone();
  out.index_copy_(2, at::remainder(at_pos, slots),
                  x.narrow(2, first, t - first).to(ring.scalar_type()));
  return out;
}

at::Tensor RingGather(const at::Tensor& ring, const at::Tensor& slots) {
  const int64_t e = slots.size(1);
  const at::Tensor idx =
      slots.view({slots.size(0), 1, e, 1}).expand({ring.size(0), ring.size(1), e, ring.size(3)});
  return at::gather(ring, 2, idx);
}

at::Tensor RingScores(const at::Tensor& q, const at::Tensor& ring_k, double scale) {
  const int64_t b = q.size(0), hq = q.size(1), d = q.size(3);
  const int64_t hkv = ring_k.size(1), s = ring_k.size(2);
  const at::Tensor qg = q.reshape({b, hkv, hq / hkv, d});  // query head h -> kv head h / G
  const at::Tensor scores =
      at::matmul(qg, ring_k.to(q.scalar_type()).transpose(-1, -2)) * scale;  // [B, Hkv, G, S]
  return scores.reshape({b, hq, 1, s});
}

at::Tensor RingValues(const at::Tensor& weights, const at::Tensor& ring_v) {
  const int64_t b = weights.size(0), hq = weights.size(1), s = weights.size(3);
  const int64_t hkv = ring_v.size(1), d = ring_v.size(3);
  const at::Tensor wg = weights.reshape({b, hkv, hq / hkv, s});
  return at::matmul(wg, ring_v.to(weights.scalar_type())).reshape({b, hq, 1, d});
}

void CheckHybridState(const char* op, const at::Tensor& kv, const at::Tensor& k_sum,
                      const at::Tensor& k_window, const at::Tensor& v_window,
                      const at::Tensor& position, const QkvDims& dims, int64_t f, int64_t slots,
                      const at::Tensor& q) {
  TORCH_CHECK(kv.defined() && k_sum.defined() && k_window.defined() &&
                  v_window.defined() && position.defined(),
              op, ": state is empty; start from EmptyState or Prefill");
  const int64_t b = dims.batch, hq = dims.q_heads, hkv = dims.kv_heads, d = dims.head_dim;
  TORCH_CHECK(kv.sizes() == at::IntArrayRef({b, hq, f, d}), op, ": state.kv must be [", b, ", ",
              hq, ", ", f, ", ", d, "], got ", kv.sizes());
  TORCH_CHECK(k_sum.sizes() == at::IntArrayRef({b, hq, f}), op, ": state.k_sum must be [", b,
              ", ", hq, ", ", f, "], got ", k_sum.sizes());
  TORCH_CHECK(k_window.sizes() == at::IntArrayRef({b, hkv, slots, d}) &&
                  v_window.sizes() == k_window.sizes(),
              op, ": state.k_window and state.v_window must be [", b, ", ", hkv, ", ", slots, ", ",
              d, "] for these options, got ", k_window.sizes(), " and ", v_window.sizes());
  TORCH_CHECK(
      position.dim() == 1 && position.size(0) == b && position.scalar_type() == at::kLong,
      op, ": state.position must be int64 [", b, "], got ", position.scalar_type(), " ",
      position.sizes());
  TORCH_CHECK(
      at::isFloatingType(kv.scalar_type()) && k_sum.scalar_type() == kv.scalar_type(), op,
      ": state.kv and state.k_sum must share a floating dtype");
  for (const at::Tensor* t : {&kv, &k_sum, &k_window, &v_window, &position}) {
    TORCH_CHECK(t->device() == q.device(), op, ": state is on ", t->device(), " but q is on ",
                q.device());
  }
}

}  // namespace linearize::kernels::detail
