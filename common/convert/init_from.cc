#include "common/convert/init_from.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/convert/fs_util.h"
#include "common/io/student_layout.h"
#include "common/model/delta_load.h"
#include "common/model/linear_attention_load.h"
#include "common/model/peft_adapter.h"
#include "common/model/weights.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

// A student whose files name its teacher (a delta's
// linearize_delta.base_sha256, in `dir` or its delta/) must come from a
// teacher file with that SHA-256; teacher directories are not hashed.
absl::Status CheckTeacher(const std::string& dir, const std::string& teacher) {
  std::string want;
  for (const std::string& d : {dir, dir + "/delta"}) {
    absl::StatusOr<std::string> text = ReadFile(d + "/config.json");
    if (!text.ok()) continue;
    const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_object() && j.contains("linearize_delta") && j["linearize_delta"].is_object() &&
        j["linearize_delta"].value("base_sha256", nlohmann::json()).is_string()) {
      want = j["linearize_delta"]["base_sha256"].get<std::string>();
      break;
    }
  }
  if (!PathExists(teacher) || IsDirectory(teacher)) return absl::OkStatus();
  return model::CheckDeltaBase(absl::StrCat("init_from ", dir), teacher, want);
}

// "q_proj rank 8" for the defined pairs of layer 0, for messages.
std::string LoraSummary(const model::LoraAdapters& lora) {
  std::string s;
  if (lora.layers.empty()) return "none";
  for (int t = 0; t < model::kNumLoraTargets; ++t) {
    const model::LoraPair& p = lora.layers[0][static_cast<size_t>(t)];
    if (!p.a.defined()) continue;
    absl::StrAppend(&s, s.empty() ? "" : ", ",
                    std::string(model::LoraTargetName(static_cast<model::LoraTarget>(t))), " rank ",
                    p.a.size(0));
  }
  return absl::StrCat(s.empty() ? "no targets" : s, ", scale ", lora.scale);
}

}  // namespace

absl::StatusOr<StudentInit> ReadStudentInit(const std::string& dir, const std::string& teacher,
                                            const model::LinearAttentionConfig& want,
                                            const io::ModelConfig& model, c10::Device device) {
  const std::string at = absl::StrCat("init_from ", dir);
  absl::StatusOr<std::optional<model::LinearAttentionConfig>> config =
      model::ReadLinearAttentionConfig(dir, model);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(at, ": ", config.status().message()));
  }
  if (!config->has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        at, ": not a converted model (its config.json has no linear_attention section)"));
  }
  // Field by field, so the message names what differs.
  const nlohmann::json have = model::LinearAttentionConfigToJson(**config);
  const nlohmann::json need = model::LinearAttentionConfigToJson(want);
  for (const auto& [key, value] : need.items()) {
    if (have.value(key, nlohmann::json()) != value) {
      return absl::InvalidArgumentError(absl::StrCat(at, ": its linear_attention.", key, " is ",
                                                     have.value(key, nlohmann::json()).dump(),
                                                     ", this run's is ", value.dump()));
    }
  }
  if (absl::Status s = CheckTeacher(dir, teacher); !s.ok()) return s;
  StudentInit init;
  absl::StatusOr<std::vector<model::StudentTensors>> attention =
      model::ReadStudentTensors(dir, want, model, device);
  if (!attention.ok()) {
    return absl::Status(attention.status().code(),
                        absl::StrCat(at, ": ", attention.status().message()));
  }
  init.attention = *std::move(attention);
  const std::optional<std::string> adapter = io::StudentAdapterDir(dir);
  if (!adapter) {
    return absl::InvalidArgumentError(absl::StrCat(
        at, ": no LoRA kept apart (adapter/, delta/ or adapter_model.safetensors): its LoRA ",
        "is merged into the projections and cannot go on training"));
  }
  absl::StatusOr<model::LoraAdapters> lora =
      model::ReadPeftAdapter(*adapter, model.num_hidden_layers, device);
  if (!lora.ok()) {
    return absl::Status(lora.status().code(), absl::StrCat(at, ": ", lora.status().message()));
  }
  init.lora = *std::move(lora);
  return init;
}

absl::Status CopyStudentInit(const StudentInit& init, const std::string& dir,
                             std::vector<model::StudentTensors>* students,
                             model::LoraAdapters* lora) {
  const std::string at = absl::StrCat("init_from ", dir);
  const auto copy = [&](const at::Tensor& from, at::Tensor& into,
                        const std::string& name) -> absl::Status {
    if (!from.defined() || from.sizes() != into.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          at, ": ", name, " has shape ", from.defined() ? model::ShapeString(from.sizes()) : "none",
          ", this run's is ", model::ShapeString(into.sizes())));
    }
    at::NoGradGuard no_grad;
    into.copy_(from);
    return absl::OkStatus();
  };
  for (size_t l = 0; l < students->size(); ++l) {
    for (auto& [name, tensor] : (*students)[l]) {
      const model::StudentTensors empty;
      const model::StudentTensors& have = l < init.attention.size() ? init.attention[l] : empty;
      const auto it = have.find(name);
      const std::string full = absl::StrCat("layer ", l, " ", name);
      if (absl::Status s = copy(it == have.end() ? at::Tensor() : it->second, tensor, full);
          !s.ok()) {
        return s;
      }
    }
  }
  // The LoRA: the same targets, ranks and scale (alpha / rank).
  bool same = init.lora.layers.size() == lora->layers.size() && init.lora.scale == lora->scale;
  for (size_t l = 0; same && l < lora->layers.size(); ++l) {
    for (int t = 0; t < model::kNumLoraTargets; ++t) {
      const model::LoraPair& from = init.lora.layers[l][static_cast<size_t>(t)];
      const model::LoraPair& into = lora->layers[l][static_cast<size_t>(t)];
      same = same && from.a.defined() == into.a.defined() &&
             (!into.a.defined() ||
              (from.a.sizes() == into.a.sizes() && from.b.sizes() == into.b.sizes()));
    }
  }
  if (!same) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ": its LoRA (", LoraSummary(init.lora), ") differs from this run's (",
                     LoraSummary(*lora), "); pass the same LoRA rank, alpha and targets"));
  }
  at::NoGradGuard no_grad;
  for (size_t l = 0; l < lora->layers.size(); ++l) {
    for (int t = 0; t < model::kNumLoraTargets; ++t) {
      model::LoraPair& into = lora->layers[l][static_cast<size_t>(t)];
      if (!into.a.defined()) continue;
      into.a.copy_(init.lora.layers[l][static_cast<size_t>(t)].a);
      into.b.copy_(init.lora.layers[l][static_cast<size_t>(t)].b);
    }
  }
  return absl::OkStatus();
}

}  // namespace linearize::convert
