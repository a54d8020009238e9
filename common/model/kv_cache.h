// The softmax teacher's per-layer memory: every key and value seen so far.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "common/model/attention.h"

namespace linearize::model {

// Keys and values of one layer in preallocated [B, Hkv, capacity, D] buffers,
// filled up to length(). Appending past the capacity reallocates to at least
// twice the size, so decoding token by token copies O(log n) times.
// Not thread-safe.
class KvCache final : public AttentionState {
 public:
  // `capacity` 0 allocates on the first Append, sized for it.
  KvCache(int64_t batch, int64_t kv_heads, int64_t head_dim, int64_t capacity,
          const at::TensorOptions& options);

  // Appends k, v [B, Hkv, T, D]; returns views of all keys and values held
  // [B, Hkv, length, D]. Throws c10::Error when the shapes do not match.
  std::pair<at::Tensor, at::Tensor> Append(const at::Tensor& k, const at::Tensor& v);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  // Views of the used part, [B, Hkv, length, D] (undefined while empty and
  // unallocated).
  at::Tensor keys() const;
  at::Tensor values() const;

  std::unique_ptr<AttentionState> Clone() const override;
  int64_t bytes() const override;
  // "k", "v": [B, Hkv, length, D].
  std::vector<std::pair<std::string, at::Tensor>> Export() const override;
  void Import(const std::vector<std::pair<std::string, at::Tensor>>& tensors) override;

 private:
  void Reserve(int64_t capacity);

  int64_t batch_, kv_heads_, head_dim_;
  at::TensorOptions options_;
  at::Tensor k_, v_;  // [B, Hkv, capacity, D]
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace linearize::model
