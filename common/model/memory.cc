#include "common/model/memory.h"

namespace linearize::model {

Memory::Memory(std::vector<std::unique_ptr<AttentionState>> layers, int64_t batch)
    : layers_(std::move(layers)), batch_(batch) {}

std::unique_ptr<Memory> Memory::Clone() const {
  std::vector<std::unique_ptr<AttentionState>> layers;
  layers.reserve(layers_.size());
  for (const auto& layer : layers_) layers.push_back(layer->Clone());
  auto copy = std::make_unique<Memory>(std::move(layers), batch_);
  copy->position_ = position_;
  return copy;
}

int64_t Memory::bytes() const {
  int64_t total = 0;
  for (const auto& layer : layers_) total += layer->bytes();
  return total;
}

}  // namespace linearize::model
