#include "common/model/softmax_attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/model/kv_cache.h"

namespace linearize::model {

SoftmaxAttention::SoftmaxAttention(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                   std::optional<int64_t> sliding_window)
    : num_heads_(num_heads),
      num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      sliding_window_(sliding_window) {
  TORCH_CHECK(num_heads > 0 && num_kv_heads > 0 && head_dim > 0 && num_heads % num_kv_heads == 0,
              "SoftmaxAttention: num_heads (", num_heads, ") must be a positive multiple of "
              "num_kv_heads (", num_kv_heads, "), head_dim ", head_dim);
  TORCH_CHECK(!sliding_window || *sliding_window > 0,
              "SoftmaxAttention: sliding_window must be positive");
}

at::Tensor SoftmaxAttention::Forward(const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, AttentionState* state,
                                     int64_t position) const {
  TORCH_CHECK(q.dim() == 4 && q.size(1) == num_heads_ && q.size(3) == head_dim_,
              "SoftmaxAttention: q must be [B, ", num_heads_, ", T, ", head_dim_, "], got ",
              q.sizes());
  TORCH_CHECK(k.dim() == 4 && k.size(0) == q.size(0) && k.size(1) == num_kv_heads_ &&
                  k.size(2) == q.size(2) && k.size(3) == head_dim_,
              "SoftmaxAttention: k must be [", q.size(0), ", ", num_kv_heads_, ", ", q.size(2),
              ", ", head_dim_, "], got ", k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "SoftmaxAttention: v ", v.sizes(), " differs from k ",
              k.sizes());
  at::Tensor keys = k;
  at::Tensor values = v;
  if (state != nullptr) {
    auto* cache = dynamic_cast<KvCache*>(state);
    TORCH_CHECK(cache != nullptr, "SoftmaxAttention: the layer state is not a KvCache");
    TORCH_CHECK(cache->length() == position, "SoftmaxAttention: the KV cache holds ",
                cache->length(), " tokens but the input starts at position ", position);
    std::tie(keys, values) = cache->Append(k, v);
  }
  const int64_t t = q.size(2);
  const int64_t s = keys.size(2);
  const int64_t past = s - t;
  // Which keys each query sees. Without history the causal flag suffices; a
  // single query with no window cut sees everything; otherwise (a chunk
  // after cached tokens, or a window shorter than the keys) an explicit mask.
  const bool window_cuts = sliding_window_ && s > *sliding_window_;
  std::optional<at::Tensor> mask;
  bool is_causal = false;
  if (!window_cuts && past == 0) {
    is_causal = t > 1;
  } else if (window_cuts || t > 1) {
    const auto index = at::TensorOptions().dtype(at::kLong).device(q.device());
    const at::Tensor qpos = at::arange(past, s, index).unsqueeze(1);  // [T, 1]
    const at::Tensor kpos = at::arange(0, s, index).unsqueeze(0);     // [1, S]
    at::Tensor allowed = kpos <= qpos;
    if (sliding_window_) allowed = allowed & (qpos - kpos < *sliding_window_);
    mask = allowed;
  }
  return at::scaled_dot_product_attention(q, keys, values, mask, /*dropout_p=*/0.0, is_causal,
                                          /*scale=*/std::nullopt,
                                          /*enable_gqa=*/num_heads_ != num_kv_heads_);
}

at::Tensor SoftmaxAttentionWeights(const at::Tensor& q, const at::Tensor& k,
                                   std::optional<int64_t> sliding_window) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && k.size(0) == q.size(0) && k.size(2) == q.size(2) &&
                  k.size(3) == q.size(3) && q.size(1) % k.size(1) == 0,
              "SoftmaxAttentionWeights: q ", q.sizes(), " and k ", k.sizes(),
              " must be [B, Hq, T, D] and [B, Hkv, T, D] with Hq a multiple of Hkv");
  const int64_t t = q.size(2);
  const at::Tensor qf = q.to(at::kFloat);
  const at::Tensor kf = k.to(at::kFloat).repeat_interleave(q.size(1) / k.size(1), 1);
  const at::Tensor s = at::matmul(qf, kf.transpose(-1, -2)) / std::sqrt(double(q.size(3)));
  const auto index = at::TensorOptions().dtype(at::kLong).device(q.device());
  const at::Tensor qpos = at::arange(t, index).unsqueeze(1);
  const at::Tensor kpos = at::arange(t, index).unsqueeze(0);
  at::Tensor allowed = kpos <= qpos;
  if (sliding_window) allowed = allowed & (qpos - kpos < *sliding_window);
  return at::softmax(s.masked_fill(allowed.logical_not(), -INFINITY), -1);
}

std::unique_ptr<AttentionState> SoftmaxAttention::NewState(
    int64_t batch, int64_t capacity, const at::TensorOptions& options) const {
  return std::make_unique<KvCache>(batch, num_kv_heads_, head_dim_, capacity, options);
}

}  // namespace linearize::model
