#include "common/model/delta_load.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <sys/stat.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"
#include "common/io/sha256.h"
#include "common/model/linear_attention_load.h"
#include "common/model/lora.h"
#include "common/model/peft_adapter.h"
#include "common/model/safetensors_weights.h"

#ifndef LINEARIZE_DEFAULT_MODEL_DIR
#define LINEARIZE_DEFAULT_MODEL_DIR ""
#endif

namespace linearize::model {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::string> FindBase(const std::string& dir, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/config.json: linearize_delta.base_model must be a file or folder name, got \"", name, "\""));
  }
  std::vector<std::string> tried = {dir + "/../" + name};
  if (std::string(LINEARIZE_DEFAULT_MODEL_DIR).size() > 0) {
    tried.push_back(absl::StrCat(LINEARIZE_DEFAULT_MODEL_DIR, "/", name));
  }
  for (const std::string& path : tried) {
    if (Exists(path)) return path;
  }
  std::string where;
  for (const std::string& path : tried) absl::StrAppend(&where, where.empty() ? "" : ", ", path);
  return absl::NotFoundError(absl::StrCat("base model ", name, " of the delta ", dir,
                                          " not found (looked at ", where,
                                          "); run scripts/setup"));
}

}  // namespace

absl::Status CheckDeltaBase(const std::string& what, const std::string& base,
                            const std::string& want) {
  if (want.empty()) return absl::OkStatus();
  absl::StatusOr<std::array<uint8_t, 32>> digest = io::Sha256OfFile(base);
  if (!digest.ok()) return digest.status();
  const std::string got = io::Sha256Label(*digest);
  if (got != want) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " was made from a base with ", want, "; ", base, " has ", got));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadedModel> LoadDelta(const std::string& dir, const nlohmann::json& section,
                                      const LoadOptions& options) {
  if (!section.is_object() || !section.contains("base_model") ||
      !section["base_model"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/config.json: linearize_delta needs a base_model file name"));
  }
  absl::StatusOr<std::string> base = FindBase(dir, section["base_model"].get<std::string>());
  if (!base.ok()) return base.status();
  if (absl::Status s = CheckDeltaBase(absl::StrCat("the delta ", dir), *base,
                                      section.value("base_sha256", std::string()));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<LoadedModel> out = LoadModel(*base, options);
  if (!out.ok()) return out.status();
  if (out->linear_attention) {
    return absl::InvalidArgumentError(
        absl::StrCat("the base ", *base, " of the delta ", dir, " is itself converted"));
  }
  const int64_t layers = out->model->num_layers();
  absl::StatusOr<LoraAdapters> lora = ReadPeftAdapter(dir, layers, out->model->device());
  if (!lora.ok()) return lora.status();
  ModelWeights weights = out->model->weights();
  {
    at::NoGradGuard no_grad;
    for (int64_t l = 0; l < layers; ++l) {
      LayerWeights& lw = weights.layers[static_cast<size_t>(l)];
      at::Tensor* slots[kNumLoraTargets] = {&lw.q_proj, &lw.k_proj, &lw.v_proj, &lw.o_proj};
      for (int t = 0; t < kNumLoraTargets; ++t) {
        const LoraPair& pair = lora->layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
        if (!pair.a.defined()) continue;
        if (pair.a.size(1) != slots[t]->size(1) || pair.b.size(0) != slots[t]->size(0) ||
            pair.a.size(0) != pair.b.size(1)) {
          return absl::InvalidArgumentError(absl::StrCat(
              dir, "/adapter_model.safetensors: layer ", l, " ", std::string(LoraTargetName(LoraTarget(t))),
              " has shapes ", ShapeString(pair.a.sizes()), " and ", ShapeString(pair.b.sizes()),
              " that do not fit the base's ", ShapeString(slots[t]->sizes())));
        }
        *slots[t] = MergeLora(*slots[t], pair, lora->scale).contiguous();
      }
    }
  }
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Create(out->config, std::move(weights));
  if (!model.ok()) return model.status();
  out->model = *std::move(model);
  absl::StatusOr<std::optional<LinearAttentionConfig>> linear =
      ApplyLinearAttentionFromDir(dir, out->model.get());
  if (!linear.ok()) return linear.status();
  if (!linear->has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/config.json: a delta needs a linear_attention section"));
  }
  out->linear_attention = *std::move(linear);
  return out;
}

}  // namespace linearize::model
