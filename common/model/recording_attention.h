// An attention layer that passes everything to the one it wraps and keeps
// what that layer saw and returned in its last forward: how attention
// transfer (common/convert) and the per-layer evaluation (common/eval) get a
// teacher layer's inputs and output without changing the model's code.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string_view>
#include <utility>

#include "common/io/model_config.h"
#include "common/model/attention.h"
#include "common/model/softmax_attention.h"

namespace linearize::model {

// What one layer's attention saw and returned in the last forward.
struct LayerRecord {
  AttentionInputs in;
  at::Tensor out;
};

class RecordingAttention final : public AttentionLayer {
 public:
  // `record` must outlive this layer.
  RecordingAttention(std::unique_ptr<AttentionLayer> inner, LayerRecord* record)
      : inner_(std::move(inner)), record_(record) {}
  // A recording softmax attention of a `config` layer: a teacher layer as it
  // is, plus the record.
  static std::unique_ptr<RecordingAttention> Softmax(const io::ModelConfig& config,
                                                     LayerRecord* record) {
    return std::make_unique<RecordingAttention>(
        std::make_unique<SoftmaxAttention>(config.num_attention_heads, config.num_key_value_heads,
                                           config.head_dim, config.sliding_window),
        record);
  }
  std::string_view name() const override { return inner_->name(); }
  // The record keeps every input, hidden included (a Lizard student learns from it).
  bool needs_hidden() const override { return true; }
  at::Tensor Forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     AttentionState* state, int64_t position) const override {
    return Forward(AttentionInputs{q, k, v, at::Tensor(), at::Tensor(), at::Tensor()}, state,
                   position);
  }
  at::Tensor Forward(const AttentionInputs& in, AttentionState* state,
                     int64_t position) const override {
    at::Tensor y = inner_->Forward(in, state, position);
    record_->in = in;
    record_->out = y;
    return y;
  }
  std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t capacity,
                                           const at::TensorOptions& o) const override {
    return inner_->NewState(batch, capacity, o);
  }

 private:
  std::unique_ptr<AttentionLayer> inner_;
  LayerRecord* record_;
};

}  // namespace linearize::model
