#include "common/model/safetensors_weights.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"
#include "nlohmann/json.hpp"

namespace linearize::model {
namespace {

namespace fs = std::filesystem;

// The file a tensor lives in, for error messages: model.safetensors, or the
// shard the index names (the index itself when it names none).
std::string TensorFile(const std::string& dir, const std::string& tensor) {
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (fs::exists(single)) return single.string();
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::ifstream in(index);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("weight_map") && j["weight_map"].is_object()) {
    const auto& map = j["weight_map"];
    if (auto it = map.find(tensor); it != map.end() && it->is_string()) {
      return (fs::path(dir) / it->get<std::string>()).string();
    }
  }
  return index.string();
}

absl::StatusOr<at::ScalarType> TorchType(io::DType dtype) {
  switch (dtype) {
    case io::DType::kF64: return at::kDouble;
    case io::DType::kF32: return at::kFloat;
    case io::DType::kF16: return at::kHalf;
    case io::DType::kBF16: return at::kBFloat16;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", std::string(io::DTypeName(dtype)),
                       " is not a floating-point type"));
  }
}

// "model.layers.N." -> N, or -1.
int64_t LayerIndex(const std::string& name) {
  static const std::string kPrefix = "model.layers.";
  if (!name.starts_with(kPrefix)) return -1;
  const size_t end = name.find('.', kPrefix.size());
  if (end == std::string::npos) return -1;
  int64_t index = -1;
  if (!absl::SimpleAtoi(name.substr(kPrefix.size(), end - kPrefix.size()), &index)) return -1;
  return index;
}

}  // namespace

// Copies the mapped bytes (the map may not be aligned for the element type)
// and converts.
absl::StatusOr<at::Tensor> TensorFromView(const io::TensorView& view, const WeightOptions& options) {
  absl::StatusOr<at::ScalarType> type = TorchType(view.dtype);
  if (!type.ok()) return type.status();
  at::Tensor raw = at::empty(view.shape, at::TensorOptions().dtype(*type));
  if (static_cast<size_t>(raw.nbytes()) != view.data.size()) {
    return absl::InternalError(absl::StrCat("tensor byte size ", view.data.size(),
                                            " does not match its shape"));
  }
  if (!view.data.empty()) std::memcpy(raw.data_ptr(), view.data.data(), view.data.size());
  return raw.to(options.device, options.dtype).contiguous();
}

absl::StatusOr<ModelWeights> LoadSafetensorsWeights(const std::string& dir,
                                                    const io::ModelConfig& config,
                                                    const WeightOptions& options,
                                                    const std::optional<LayerRange>& layers) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json: ", s.message()));
  }
  if (layers) {
    if (absl::Status s = ValidateLayerRange(config, *layers); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": ", s.message()));
    }
  }
  absl::StatusOr<std::unique_ptr<io::SafetensorsCheckpoint>> ckpt =
      io::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();

  for (const std::string& name : (*ckpt)->names()) {
    if (LayerIndex(name) >= config.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          TensorFile(dir, name), ": tensor ", name, " belongs to a layer beyond the ",
          config.num_hidden_layers, " layers (num_hidden_layers) of ", dir, "/config.json"));
    }
  }

  ModelWeights weights;
  for (const WeightSpec& spec : WeightSpecs(config, &weights)) {
    if (!HoldsTensor(layers, spec)) continue;  // left unread (the file is only mapped)
    if (spec.slot == &weights.lm_head && config.tie_word_embeddings) continue;
    const io::TensorView* view = (*ckpt)->Find(spec.hf_name);
    if (view == nullptr) {
      if (!spec.required && spec.slot == &weights.lm_head) {
        return absl::InvalidArgumentError(absl::StrCat(
            TensorFile(dir, spec.hf_name), ": missing tensor lm_head.weight (expected shape ",
            ShapeString(spec.shape), "); config.json has tie_word_embeddings false"));
      }
      if (!spec.required) continue;
      return absl::InvalidArgumentError(
          absl::StrCat(TensorFile(dir, spec.hf_name), ": missing tensor ", spec.hf_name,
                       " (expected shape ", ShapeString(spec.shape), ")"));
    }
    if (at::IntArrayRef(view->shape) != at::IntArrayRef(spec.shape)) {
      return absl::InvalidArgumentError(absl::StrCat(
          TensorFile(dir, spec.hf_name), ": tensor ", spec.hf_name, " has shape ",
          ShapeString(view->shape), ", expected ", ShapeString(spec.shape),
          " from config.json"));
    }
    absl::StatusOr<at::Tensor> tensor = TensorFromView(*view, options);
    if (!tensor.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(TensorFile(dir, spec.hf_name), ": tensor ",
                                                     spec.hf_name, ": ",
                                                     tensor.status().message()));
    }
    *spec.slot = *std::move(tensor);
  }
  if (config.tie_word_embeddings) weights.lm_head = weights.embed;
  weights.only_layers = layers;
  return weights;
}

}  // namespace linearize::model
