#include "common/convert/export.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/convert/fs_util.h"
#include "common/convert/tensor_file.h"
#include "common/io/sha256.h"
#include "common/model/weights.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

constexpr char kStaging[] = ".export.tmp";
// The PEFT adapter's folder. Not the top level: transformers (with peft
// installed) applies an adapter_config.json it finds beside the weights on
// top of them, which would add the already merged LoRA a second time.
constexpr char kAdapterDir[] = "adapter";
// The student as a delta over its teacher (common/model/delta_load.h).
constexpr char kDeltaDir[] = "delta";

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p.substr(p.find_last_of('/') + 1);
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kDouble:
      return "float64";
    default:
      return "float32";
  }
}

std::vector<std::string> LoraTargetNames(const model::LoraOptions& lora) {
  std::vector<std::string> names;
  for (model::LoraTarget t : lora.targets) names.emplace_back(model::LoraTargetName(t));
  return names;
}

std::string ModelCard(const ExportInputs& in, const std::string& dtype) {
  const ConvertOptions& o = *in.options;
  const ConvertResult& r = *in.result;
  const model::LinearAttentionConfig& a = o.attention;
  const std::string recipe(model::RecipeName(a.recipe));
  const std::string teacher_name = BaseName(o.teacher);
  std::string s = absl::StrCat(
      "---\nlibrary_name: linearize\nbase_model: ", teacher_name, "\ntags:\n- linear-attention\n- ",
      recipe, "\n---\n\n# ", teacher_name, " (", recipe, " linear attention)\n\n",
      "Converted from ", in.teacher->description, " by `linearize convert`. Serve it with\n",
      "`linearize generate --model <this directory>`.\n\n## Recipe\n\n- recipe: ", recipe, "\n");
  if (a.recipe == model::Recipe::kLinear) {
    absl::StrAppend(&s, "- feature map: elu(x) + 1 (fixed, no window)\n");
  } else {
    absl::StrAppend(&s, "- feature map: hedgehog, ", a.feature_dim, " x 2 features per head\n",
                    "- softmax window: ", a.window, " tokens (", a.terrace ? "terrace" : "sliding",
                    ")\n");
    if (a.recipe == model::Recipe::kLizard) {
      absl::StrAppend(&s, "- meta-memory tokens: ", a.meta_tokens,
                      "; gate log-normaliser: ", a.gate_normalizer, "\n");
    }
  }
  if (!o.init_from.empty()) {
    absl::StrAppend(&s, "- started from the student in `", o.init_from,
                    "` (its attention tensors and LoRA)\n");
  }
  absl::StrAppend(
      &s, "- layers: ", a.layers.empty() ? std::string("all") : absl::StrJoin(a.layers, ", "), "\n",
      "- stage 1 (attention transfer): ", r.stage1_steps, " steps, lr ", o.stage1.lr,
      ", MSE weight ", o.mse_weight,
      o.xent_weight > 0 ? absl::StrCat(", attention cross-entropy weight ", o.xent_weight)
                        : std::string(),
      "\n", "- stage 2 (LoRA r ", o.lora.rank, ", alpha ",
      o.lora.alpha, ", dropout ", o.lora.dropout, ", on ",
      absl::StrJoin(LoraTargetNames(o.lora), ", "), "): ", r.stage2_steps, " steps, lr ",
      o.stage2.lr, o.kd_weight > 0 ? absl::StrCat(", KD weight ", o.kd_weight) : std::string(),
      "; merged into the projections\n\n## Data\n\n- ", in.data_source, "\n",
      "- token budget: ", o.tokens, "; trained on ", r.tokens_seen, " tokens (sequences of ",
      o.data.seq_len, ", ", o.batch_size, " x ", o.grad_accum, " per step)\n", "- seed: ", o.seed,
      "\n- time: ", absl::StrFormat("%.1f", r.seconds), " s",
      r.resumed ? " (resumed from a checkpoint)" : "", "\n\n## Evaluation (validation split)\n\n",
      "| metric | value |\n|---|---|\n",
      absl::StrFormat("| attention MSE before stage 1 | %.6g |\n", r.initial_val_mse),
      absl::StrFormat("| attention MSE after stage 1 | %.6g |\n", r.final_val_mse),
      absl::StrFormat("| teacher perplexity | %.4f |\n", r.teacher_val_ppl),
      absl::StrFormat("| student perplexity after stage 1 | %.4f |\n",
                      r.student_val_ppl_before_finetune),
      absl::StrFormat("| student perplexity after stage 2 | %.4f |\n", r.student_val_ppl),
      "\n## Files\n\n", "- `config.json`: the teacher's configuration",
      in.teacher->gguf ? " (derived from the GGUF metadata)" : "",
      " with a `linear_attention` section\n", "- `model.safetensors`: all weights (", dtype,
      "; LoRA merged) and the student attention tensors `model.layers.N.self_attn.*`\n",
      "- tokenizer and generation settings: ",
      absl::StrJoin(
          [&] {
            std::vector<std::string> names;
            for (const auto& [name, contents] : in.teacher->files)
              names.push_back("`" + name + "`");
            return names;
          }(),
          ", "),
      "\n");
  absl::StrAppend(&s, "- `delta/`: the same student as a delta over the teacher (the student ",
                  "attention tensors and the LoRA in bfloat16, a few MB); `linearize` loads it ",
                  "when the teacher file sits beside it or in the default model folder\n");
  if (o.peft) {
    absl::StrAppend(&s, "- `adapter/` (`adapter_config.json`, `adapter_model.safetensors`): the ",
                    "LoRA as a PEFT adapter, already merged into `model.safetensors`; it ",
                    "applies to the unmerged student (the teacher's weights with this ",
                    "directory's linear attention)\n");
  }
  return s;
}

nlohmann::json AdapterConfig(const ConvertOptions& o) {
  return {{"alpha_pattern", nlohmann::json::object()},
          {"auto_mapping", nullptr},
          {"base_model_name_or_path", o.teacher},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"layers_pattern", nullptr},
          {"layers_to_transform", nullptr},
          {"lora_alpha", o.lora.alpha},
          {"lora_dropout", o.lora.dropout},
          {"modules_to_save", nullptr},
          {"peft_type", "LORA"},
          {"r", o.lora.rank},
          {"rank_pattern", nlohmann::json::object()},
          {"revision", nullptr},
          {"target_modules", LoraTargetNames(o.lora)},
          {"task_type", "CAUSAL_LM"},
          {"use_dora", false},
          {"use_rslora", false}};
}

// The LoRA as a PEFT adapter in `dir` (which exists), its tensors in `dtype`.
absl::Status WriteAdapter(const ExportInputs& in, const std::string& dir, at::ScalarType dtype) {
  NamedTensorList adapter;
  for (const auto& [name, t] : in.lora->Named()) {
    adapter.emplace_back(PeftTensorName(name), t.to(dtype));
  }
  if (absl::Status s = WriteTensorFile(dir + "/adapter_model.safetensors", adapter,
                                       {{"format", "pt"}});
      !s.ok()) {
    return s;
  }
  return WriteFileAtomic(dir + "/adapter_config.json", AdapterConfig(*in.options).dump(2) + "\n");
}

// delta/: config.json naming the teacher as base_model (with its SHA-256
// when it is a file), the student tensors and the LoRA adapter in bfloat16
// (a few MB for a small model), and the model card under a short note.
absl::Status WriteDelta(const ExportInputs& in, nlohmann::json config, const std::string& dir,
                        const std::string& card) {
  std::string teacher = in.options->teacher;
  while (teacher.size() > 1 && teacher.back() == '/') teacher.pop_back();
  const std::string base = teacher.substr(teacher.find_last_of('/') + 1);
  nlohmann::json delta = {{"base_model", base}};
  if (!IsDirectory(teacher)) {
    absl::StatusOr<std::array<uint8_t, 32>> digest = io::Sha256OfFile(teacher);
    if (!digest.ok()) return digest.status();
    delta["base_sha256"] = io::Sha256Label(*digest);
  }
  config["linearize_delta"] = delta;
  if (absl::Status s = WriteFileAtomic(dir + "/config.json", config.dump(2) + "\n"); !s.ok()) {
    return s;
  }
  NamedTensorList tensors;
  for (size_t l = 0; l < in.students.size(); ++l) {
    for (const auto& [name, t] : in.students[l]) {
      tensors.emplace_back(absl::StrCat("model.layers.", l, ".self_attn.", name),
                           t.to(at::kBFloat16));
    }
  }
  if (absl::Status s = WriteTensorFile(dir + "/model.safetensors", tensors, {{"format", "pt"}});
      !s.ok()) {
    return s;
  }
  if (in.lora != nullptr) {
    if (absl::Status s = WriteAdapter(in, dir, at::kBFloat16); !s.ok()) return s;
  }
  return WriteFileAtomic(
      dir + "/README.md",
      absl::StrCat("# A delta over ", base, "\n\nThe student attention tensors (`model.safetensors`) ",
                   "and the LoRA (`adapter_*`, PEFT names) of the model below, in bfloat16. ",
                   "`linearize` rebuilds the student from them and `", base,
                   "`, which it looks for beside this folder and in the default model folder; ",
                   "config.json's `linearize_delta` names it by file name and SHA-256.\n\n", card));
}

// Writes every file into `staging`; returns their names.
absl::StatusOr<std::vector<std::string>> WriteAll(const ExportInputs& in,
                                                  const std::string& staging) {
  std::vector<std::string> written;
  auto write_text = [&](const std::string& name, const std::string& text) -> absl::Status {
    if (absl::Status s = WriteFileAtomic(staging + "/" + name, text); !s.ok()) return s;
    written.push_back(name);
    return absl::OkStatus();
  };
  const model::LlamaModel& student = *in.student;
  const io::ModelConfig& config = student.config();
  const std::string dtype = DtypeName(student.dtype());

  nlohmann::json j = in.teacher->config_json;
  j["linear_attention"] = model::LinearAttentionConfigToJson(in.options->attention);
  j["torch_dtype"] = dtype;
  if (j.contains("dtype")) j["dtype"] = dtype;  // transformers 5's spelling
  if (absl::Status s = write_text("config.json", j.dump(2) + "\n"); !s.ok()) return s;

  model::ModelWeights weights = student.weights();
  NamedTensorList tensors;
  for (const model::WeightSpec& spec : model::WeightSpecs(config, &weights)) {
    if (spec.slot == &weights.lm_head && config.tie_word_embeddings) continue;
    if (!spec.slot->defined()) continue;
    tensors.emplace_back(spec.hf_name, *spec.slot);
  }
  for (size_t l = 0; l < in.students.size(); ++l) {
    for (const auto& [name, t] : in.students[l]) {
      tensors.emplace_back(absl::StrCat("model.layers.", l, ".self_attn.", name), t);
    }
  }
  if (absl::Status s = WriteTensorFile(staging + "/model.safetensors", tensors, {{"format", "pt"}});
      !s.ok()) {
    return s;
  }
  written.push_back("model.safetensors");
  tensors.clear();

  for (const auto& [name, contents] : in.teacher->files) {
    if (absl::Status s = write_text(name, contents); !s.ok()) return s;
  }
  if (in.options->peft && in.lora != nullptr) {
    const std::string adapter_dir = absl::StrCat(staging, "/", kAdapterDir);
    if (absl::Status s = MakeDirs(adapter_dir); !s.ok()) return s;
    if (absl::Status s = WriteAdapter(in, adapter_dir, at::kFloat); !s.ok()) return s;
    written.push_back(kAdapterDir);
  }
  const std::string delta_dir = absl::StrCat(staging, "/", kDeltaDir);
  if (absl::Status s = MakeDirs(delta_dir); !s.ok()) return s;
  const std::string card = ModelCard(in, dtype);
  if (absl::Status s = WriteDelta(in, j, delta_dir, card); !s.ok()) return s;
  written.push_back(kDeltaDir);
  if (absl::Status s = write_text("README.md", card); !s.ok()) return s;
  return written;
}

}  // namespace

std::string PeftTensorName(const std::string& lora_name) { return "base_model.model." + lora_name; }

absl::Status ExportModel(const ExportInputs& in, const std::string& dir) {
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  const std::string staging = absl::StrCat(dir, "/", kStaging);
  if (absl::Status s = RemoveTree(staging); !s.ok()) return s;
  if (absl::Status s = MakeDirs(staging); !s.ok()) return s;
  absl::StatusOr<std::vector<std::string>> written;
  try {
    written = WriteAll(in, staging);
  } catch (const c10::Error& e) {
    written = absl::InternalError(absl::StrCat("writing ", dir, ": ", e.what_without_backtrace()));
  }
  if (!written.ok()) {
    (void)RemoveTree(staging);  // frees the space; the previous files stay
    return absl::Status(written.status().code(), absl::StrCat("exporting the model to ", dir,
                                                              " (its previous files are kept): ",
                                                              written.status().message()));
  }
  // Renames within one file system: nothing can run out of space from here.
  // A previous export's adapter goes too (it no longer applies).
  for (const char* sub : {kAdapterDir, kDeltaDir}) {
    if (absl::Status s = RemoveTree(absl::StrCat(dir, "/", sub)); !s.ok()) return s;
  }
  for (const std::string& name : *written) {
    if (absl::Status s = Rename(staging + "/" + name, dir + "/" + name); !s.ok()) return s;
  }
  return RemoveTree(staging);
}

}  // namespace linearize::convert
