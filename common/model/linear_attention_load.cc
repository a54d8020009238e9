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

absl::StatusOr<std::optional<LinearAttentionConfig>> ApplyLinearAttentionFromDir(
    const std::string& dir, LlamaModel* model) {
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
  if (absl::Status s = ValidateLinearAttentionConfig(*config, model->config()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", s.message()));
  }
  absl::StatusOr<std::unique_ptr<io::SafetensorsCheckpoint>> ckpt =
      io::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  try {
    for (int64_t layer = 0; layer < model->num_layers(); ++layer) {
      if (!IsConverted(*config, layer)) continue;
      StudentTensors tensors;
      const std::string prefix = absl::StrCat("model.layers.", layer, ".self_attn.");
      for (const auto& [name, shape] : StudentTensorShapes(*config, model->config())) {
        const io::TensorView* view = (*ckpt)->Find(prefix + name);
        if (view == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              dir, ": missing tensor ", prefix, name, " (expected shape ", ShapeString(shape),
              ") that config.json's linear_attention section calls for"));
        }
        absl::StatusOr<at::Tensor> t = TensorFromView(*view, WeightOptions{at::kFloat, model->device()});
        if (!t.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(dir, ": tensor ", prefix, name, ": ", t.status().message()));
        }
        tensors.emplace(name, *std::move(t));
      }
      absl::StatusOr<std::unique_ptr<StudentAttention>> attention =
          MakeStudentAttention(*config, model->config(), std::move(tensors));
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
