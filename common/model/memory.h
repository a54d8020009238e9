// What a model remembers of one batch of sequences between forward calls:
// one AttentionState per layer (a KV cache for the teacher, a recurrent state
// for converted models) and how many tokens have been consumed.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "common/model/attention.h"

namespace linearize::model {

// Made by LlamaModel::NewMemory; every sequence of the batch is at the same
// position. Not thread-safe: one forward at a time per Memory.
class Memory {
 public:
  Memory(std::vector<std::unique_ptr<AttentionState>> layers, int64_t batch);

  int64_t batch() const { return batch_; }
  // Tokens consumed so far; the next token gets this RoPE position.
  int64_t position() const { return position_; }
  size_t num_layers() const { return layers_.size(); }
  AttentionState* layer(size_t i) { return layers_.at(i).get(); }
  const AttentionState* layer(size_t i) const { return layers_.at(i).get(); }

  // Called by the model after each layer has taken `tokens` more tokens.
  void Advance(int64_t tokens) { position_ += tokens; }

  // A deep copy that continues independently (forking a session).
  std::unique_ptr<Memory> Clone() const;
  // Bytes of tensor storage held by all layers.
  int64_t bytes() const;

  // Per layer, the tensors of its state (AttentionState::Export).
  using LayerTensors = std::vector<std::pair<std::string, at::Tensor>>;
  std::vector<LayerTensors> Export() const;
  // Replaces every layer's state and the position with an Export of a memory
  // of the same model. INVALID_ARGUMENT naming the layer and tensor at fault
  // (then the memory may be partly changed: discard it).
  absl::Status Import(int64_t position, const std::vector<LayerTensors>& layers);

 private:
  std::vector<std::unique_ptr<AttentionState>> layers_;
  int64_t batch_;
  int64_t position_ = 0;
};

}  // namespace linearize::model
