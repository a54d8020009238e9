#include "common/convert/export.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/convert/fs_util.h"
#include "common/convert/tensor_file.h"
#include "common/model/weights.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

std::string ModelCard(const ExportInputs& in) {
  const ConvertOptions& o = *in.options;
  const ConvertResult& r = *in.result;
  const model::LinearAttentionConfig& a = o.attention;
  std::string s = absl::StrCat(
      "# ", in.teacher_dir.substr(in.teacher_dir.find_last_of('/') + 1), " (",
      std::string(model::RecipeName(a.recipe)), " linear attention)\n\n",
      "Converted from `", in.teacher_dir, "` by `linearize convert`.\n\n## Recipe\n\n",
      "- recipe: ", std::string(model::RecipeName(a.recipe)), "\n");
  if (a.recipe == model::Recipe::kLinear) {
    absl::StrAppend(&s, "- feature map: elu(x) + 1 (fixed, no window)\n");
  } else {
    absl::StrAppend(&s, "- feature map: hedgehog, ", a.feature_dim, " x 2 features per head\n",
                    "- softmax window: ", a.window, " tokens (",
                    a.terrace ? "terrace" : "sliding", ")\n");
    if (a.recipe == model::Recipe::kLizard) {
      absl::StrAppend(&s, "- meta-memory tokens: ", a.meta_tokens,
                      "; gate log-normaliser: ", a.gate_normalizer, "\n");
    }
  }
  absl::StrAppend(&s, "- layers: ", a.layers.empty() ? std::string("all") : absl::StrJoin(a.layers, ", "), "\n",
                  "- stage 1 (attention transfer): ", r.stage1_steps, " steps, lr ", o.stage1.lr,
                  ", MSE weight ", o.mse_weight, "\n",
                  "- stage 2 (LoRA r ", o.lora.rank, ", alpha ", o.lora.alpha, ", dropout ",
                  o.lora.dropout, "): ", r.stage2_steps, " steps, lr ", o.stage2.lr,
                  o.kd_weight > 0 ? absl::StrCat(", KD weight ", o.kd_weight) : std::string(),
                  "; merged into the projections\n\n## Data\n\n- ",
                  in.data_source, "\n- training tokens: ", r.tokens_seen, "\n- time: ",
                  absl::StrFormat("%.1f", r.seconds), " s\n\n## Evaluation (validation split)\n\n",
                  "| metric | value |\n|---|---|\n",
                  absl::StrFormat("| attention MSE before stage 1 | %.6g |\n", r.initial_val_mse),
                  absl::StrFormat("| attention MSE after stage 1 | %.6g |\n", r.final_val_mse),
                  absl::StrFormat("| teacher perplexity | %.4f |\n", r.teacher_val_ppl),
                  absl::StrFormat("| student perplexity after stage 1 | %.4f |\n",
                                  r.student_val_ppl_before_finetune),
                  absl::StrFormat("| student perplexity after stage 2 | %.4f |\n", r.student_val_ppl));
  return s;
}

}  // namespace

absl::Status ExportModel(const ExportInputs& in, const std::string& dir) {
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  const model::LlamaModel& teacher = *in.teacher->model;
  const io::ModelConfig& config = teacher.config();
  // config.json: the teacher's with the new section.
  absl::StatusOr<std::string> text = ReadFile(in.teacher_dir + "/config.json");
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(in.teacher_dir, "/config.json: not a JSON object"));
  }
  j["linear_attention"] = model::LinearAttentionConfigToJson(in.options->attention);
  if (absl::Status s = WriteFileAtomic(dir + "/config.json", j.dump(2) + "\n"); !s.ok()) return s;

  // Weights: the teacher's (LoRA merged), then the student tensors.
  model::ModelWeights weights = teacher.weights();
  NamedTensorList tensors;
  for (const model::WeightSpec& spec : model::WeightSpecs(config, &weights)) {
    if (spec.slot == &weights.lm_head && config.tie_word_embeddings) continue;
    at::Tensor t = *spec.slot;
    if (!t.defined()) continue;
    if (in.lora != nullptr) {
      const std::string name = spec.hf_name;
      for (int target = 0; target < model::kNumLoraTargets; ++target) {
        const std::string proj =
            std::string(model::LoraTargetName(static_cast<model::LoraTarget>(target)));
        for (size_t l = 0; l < in.lora->layers.size(); ++l) {
          if (name == absl::StrCat("model.layers.", l, ".self_attn.", proj, ".weight")) {
            t = model::MergeLora(t, in.lora->layers[l][static_cast<size_t>(target)],
                                 in.lora->scale);
          }
        }
      }
    }
    tensors.emplace_back(spec.hf_name, t);
  }
  for (size_t l = 0; l < in.students.size(); ++l) {
    for (const auto& [name, t] : in.students[l]) {
      tensors.emplace_back(absl::StrCat("model.layers.", l, ".self_attn.", name), t);
    }
  }
  if (absl::Status s = WriteTensorFile(dir + "/model.safetensors", tensors, {{"format", "pt"}});
      !s.ok()) {
    return s;
  }
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                           "special_tokens_map.json", "chat_template.jinja",
                           "generation_config.json"}) {
    const std::string from = absl::StrCat(in.teacher_dir, "/", file);
    if (!PathExists(from)) continue;
    if (absl::Status s = CopyFile(from, absl::StrCat(dir, "/", file)); !s.ok()) return s;
  }
  return WriteFileAtomic(dir + "/README.md", ModelCard(in));
}

}  // namespace linearize::convert
