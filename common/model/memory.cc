#include "common/model/memory.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"

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

std::vector<Memory::LayerTensors> Memory::Export() const {
  std::vector<LayerTensors> out;
  out.reserve(layers_.size());
  for (const auto& layer : layers_) out.push_back(layer->Export());
  return out;
}

absl::Status Memory::Import(int64_t position, const std::vector<LayerTensors>& layers) {
  if (position < 0) return absl::InvalidArgumentError("memory: negative position");
  if (layers.size() != layers_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("memory: the state has ", layers.size(),
                                                   " layers, the model ", layers_.size()));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    try {
      layers_[i]->Import(layers[i]);
    } catch (const c10::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory: layer ", i, ": ", e.what_without_backtrace()));
    }
  }
  position_ = position;
  return absl::OkStatus();
}

}  // namespace linearize::model
