#include "common/model/peft_adapter.h"

#include <ATen/ATen.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"
#include "common/model/safetensors_weights.h"
#include "nlohmann/json.hpp"

namespace linearize::model {

absl::StatusOr<LoraAdapters> ReadPeftAdapter(const std::string& dir, int64_t layers,
                                             c10::Device device) {
  std::ifstream in(dir + "/adapter_config.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  const std::string where = dir + "/adapter_config.json";
  if (!in || j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing or not a JSON object"));
  }
  if (!j.contains("r") || !j["r"].is_number() || j["r"].get<double>() <= 0 ||
      !j.contains("lora_alpha") || !j["lora_alpha"].is_number() || !j.contains("target_modules") ||
      !j["target_modules"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": needs r > 0, lora_alpha and a target_modules list"));
  }
  LoraAdapters lora;
  lora.scale = j["lora_alpha"].get<double>() / j["r"].get<double>();
  lora.layers.resize(static_cast<size_t>(layers));
  absl::StatusOr<std::unique_ptr<io::SafetensorsFile>> file =
      io::SafetensorsFile::Open(dir + "/adapter_model.safetensors");
  if (!file.ok()) return file.status();
  for (const nlohmann::json& module : j["target_modules"]) {
    if (!module.is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ": bad target"));
    absl::StatusOr<LoraTarget> target = ParseLoraTarget(module.get<std::string>());
    if (!target.ok())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", target.status().message()));
    for (int64_t l = 0; l < layers; ++l) {
      LoraPair& pair = lora.layers[static_cast<size_t>(l)][static_cast<size_t>(*target)];
      for (auto [letter, slot] : {std::pair{"A", &pair.a}, std::pair{"B", &pair.b}}) {
        const std::string name =
            absl::StrCat("base_model.model.model.layers.", l, ".self_attn.",
                         std::string(LoraTargetName(*target)), ".lora_", letter, ".weight");
        const io::TensorView* view = (*file)->Find(name);
        if (view == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(dir, "/adapter_model.safetensors: missing tensor ", name));
        }
        absl::StatusOr<at::Tensor> t = TensorFromView(*view, WeightOptions{at::kFloat, device});
        if (!t.ok()) return t.status();
        *slot = *std::move(t);
      }
    }
  }
  return lora;
}

}  // namespace linearize::model
