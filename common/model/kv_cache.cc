#include "common/model/kv_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace linearize::model {

KvCache::KvCache(int64_t batch, int64_t kv_heads, int64_t head_dim, int64_t capacity,
                 const at::TensorOptions& options)
    : batch_(batch), kv_heads_(kv_heads), head_dim_(head_dim), options_(options) {
  TORCH_CHECK(batch > 0 && kv_heads > 0 && head_dim > 0 && capacity >= 0,
              "KvCache: invalid sizes batch=", batch, " kv_heads=", kv_heads,
              " head_dim=", head_dim, " capacity=", capacity);
  if (capacity > 0) Reserve(capacity);
}

void KvCache::Reserve(int64_t capacity) {
  if (capacity <= capacity_) return;
  at::Tensor k = at::empty({batch_, kv_heads_, capacity, head_dim_}, options_);
  at::Tensor v = at::empty({batch_, kv_heads_, capacity, head_dim_}, options_);
  if (length_ > 0) {
    k.narrow(2, 0, length_).copy_(k_.narrow(2, 0, length_));
    v.narrow(2, 0, length_).copy_(v_.narrow(2, 0, length_));
  }
  k_ = std::move(k);
  v_ = std::move(v);
  capacity_ = capacity;
}

std::pair<at::Tensor, at::Tensor> KvCache::Append(const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(k.dim() == 4 && k.size(0) == batch_ && k.size(1) == kv_heads_ &&
                  k.size(3) == head_dim_,
              "KvCache: keys must be [", batch_, ", ", kv_heads_, ", T, ", head_dim_, "], got ",
              k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "KvCache: values ", v.sizes(), " differ from keys ",
              k.sizes());
  const int64_t t = k.size(2);
  if (length_ + t > capacity_) {
    Reserve(std::max({length_ + t, 2 * capacity_, int64_t{16}}));
  }
  k_.narrow(2, length_, t).copy_(k);
  v_.narrow(2, length_, t).copy_(v);
  length_ += t;
  return {keys(), values()};
}

at::Tensor KvCache::keys() const { return k_.defined() ? k_.narrow(2, 0, length_) : k_; }
at::Tensor KvCache::values() const { return v_.defined() ? v_.narrow(2, 0, length_) : v_; }

std::unique_ptr<AttentionState> KvCache::Clone() const {
  auto copy = std::make_unique<KvCache>(batch_, kv_heads_, head_dim_, 0, options_);
  if (capacity_ > 0) {
    copy->Reserve(capacity_);
    if (length_ > 0) {
      copy->k_.narrow(2, 0, length_).copy_(keys());
      copy->v_.narrow(2, 0, length_).copy_(values());
    }
  }
  copy->length_ = length_;
  return copy;
}

int64_t KvCache::bytes() const {
  return k_.defined() ? static_cast<int64_t>(k_.nbytes() + v_.nbytes()) : 0;
}

std::vector<std::pair<std::string, at::Tensor>> KvCache::Export() const {
  if (length_ == 0) {
    at::Tensor empty = at::empty({batch_, kv_heads_, 0, head_dim_}, options_);
    return {{"k", empty}, {"v", empty}};
  }
  return {{"k", keys()}, {"v", values()}};
}

void KvCache::Import(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  TORCH_CHECK(tensors.size() == 2 && tensors[0].first == "k" && tensors[1].first == "v",
              "KvCache: a snapshot must hold tensors k and v");
  const at::Tensor& k = tensors[0].second;
  const at::Tensor& v = tensors[1].second;
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(t.dim() == 4 && t.size(0) == batch_ && t.size(1) == kv_heads_ &&
                    t.size(3) == head_dim_,
                "KvCache: snapshot tensor ", name, " must be [", batch_, ", ", kv_heads_,
                ", T, ", head_dim_, "], got ", t.sizes());
  }
  TORCH_CHECK(v.sizes() == k.sizes(), "KvCache: snapshot tensor v ", v.sizes(),
              " differs from k ", k.sizes());
  const int64_t length = k.size(2);
  length_ = 0;
  if (length > capacity_) Reserve(length);
  if (length > 0) {
    k_.narrow(2, 0, length).copy_(k);
    v_.narrow(2, 0, length).copy_(v);
  }
  length_ = length;
}

}  // namespace linearize::model
