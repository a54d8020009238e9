#include "common/model/linear_attention_load.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"
#include "common/model/safetensors_weights.h"
#include "common/model/student_attention.h"
#include "common/model/weights.h"

namespace linearize::model {

absl::StatusOr<std::optional<LinearAttentionConfig>> ReadLinearAttentionConfig(
    const std::string& dir, const io::ModelConfig& model) {
  const std::string config_path = dir + "/config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", config_path));
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  const auto section = j.find("linear_attention");
  if (section == j.end() || section->is_null()) return std::nullopt;
  absl::StatusOr<LinearAttentionConfig> config =
      LinearAttentionConfigFromJson(*section, config_path);
  if (!config.ok()) return config.status();
  if (absl::Status s = ValidateLinearAttentionConfig(*config, model); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", s.message()));
  }
  return config;
}

absl::StatusOr<std::vector<StudentTensors>> ReadStudentTensors(const std::string& dir,
                                                               const LinearAttentionConfig& config,
                                                               const io::ModelConfig& model,
                                                               c10::Device device) {
  absl::StatusOr<std::unique_ptr<io::SafetensorsCheckpoint>> ckpt =
      io::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  std::vector<StudentTensors> out(static_cast<size_t>(model.num_hidden_layers));
  try {
    for (int64_t layer = 0; layer < model.num_hidden_layers; ++layer) {
      if (!IsConverted(config, layer)) continue;
      const std::string prefix = absl::StrCat("model.layers.", layer, ".self_attn.");
      for (const auto& [name, shape] : StudentTensorShapes(config, model)) {
        const io::TensorView* view = (*ckpt)->Find(prefix + name);
        if (view == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              dir, ": missing tensor ", prefix, name, " (expected shape ", ShapeString(shape),
              ") that config.json's linear_attention section calls for"));
        }
        absl::StatusOr<at::Tensor> t = TensorFromView(*view, WeightOptions{at::kFloat, device});
        if (!t.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(dir, ": tensor ", prefix, name, ": ", t.status().message()));
        }
        out[static_cast<size_t>(layer)].emplace(name, *std::move(t));
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(dir, ": ", e.what_without_backtrace()));
  }
  return out;
}

absl::StatusOr<std::optional<LinearAttentionConfig>> ApplyLinearAttentionFromDir(
    const std::string& dir, LlamaModel* model) {
  absl::StatusOr<std::optional<LinearAttentionConfig>> config =
      ReadLinearAttentionConfig(dir, model->config());
  if (!config.ok() || !config->has_value()) return config;
  try {
    absl::StatusOr<std::vector<StudentTensors>> tensors =
        ReadStudentTensors(dir, **config, model->config(), model->device());
    if (!tensors.ok()) return tensors.status();
    for (int64_t layer = 0; layer < model->num_layers(); ++layer) {
      if (!IsConverted(**config, layer)) continue;
      absl::StatusOr<std::unique_ptr<StudentAttention>> attention = MakeStudentAttention(
          **config, model->config(), std::move((*tensors)[static_cast<size_t>(layer)]));
      if (!attention.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir, ": layer ", layer, ": ", attention.status().message()));
      }
      model->SetAttention(layer, *std::move(attention));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(dir, ": ", e.what_without_backtrace()));
  }
  return config;
}

}  // namespace linearize::model
