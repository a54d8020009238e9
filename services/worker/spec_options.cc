#include "services/worker/spec_options.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/paths.h"

namespace linearize::worker {
namespace {

absl::Status Unsupported(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", what, " is not supported by this worker's conversion pipeline"));
}

// Files of a TextSource: the file itself, or a directory's regular files
// ending in .jsonl, .json or .txt, in name order (common.proto TextSource).
absl::StatusOr<std::vector<std::string>> SourceFiles(const v1::TextSource& source,
                                                     const std::string& root,
                                                     const std::string& field) {
  absl::StatusOr<std::string> path =
      server::ResolveExistingUnderRoot(root, source.path(), field + ".path");
  if (!path.ok()) return path.status();
  struct stat st;
  if (::stat(path->c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(field, ".path: \"", source.path(), "\" is unreadable"));
  }
  std::vector<std::string> files;
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = ::opendir(path->c_str());
    if (dir == nullptr) {
      return absl::NotFoundError(
          absl::StrCat(field, ".path: cannot list directory \"", source.path(), "\""));
    }
    while (dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      const std::string full = *path + "/" + name;
      struct stat fs;
      if (::stat(full.c_str(), &fs) != 0 || !S_ISREG(fs.st_mode)) continue;
      if (absl::EndsWith(name, ".jsonl") || absl::EndsWith(name, ".json") ||
          absl::EndsWith(name, ".txt")) {
        files.push_back(full);
      }
    }
    ::closedir(dir);
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".path: directory \"", source.path(),
                                                     "\" holds no .jsonl, .json or .txt files"));
    }
  } else {
    files.push_back(*path);
  }
  // The pipeline reads .jsonl as JSONL and everything else as plain text.
  for (const std::string& f : files) {
    const bool jsonl_name = absl::EndsWith(f, ".jsonl");
    const bool json_name = absl::EndsWith(f, ".json");
    if (json_name && source.format() != v1::DATA_FORMAT_TEXT) {
      return Unsupported(field + ".path", absl::StrCat("reading \"", f.substr(root.size() + 1),
                                                       "\" (.json) as JSONL; name it .jsonl"));
    }
    if (source.format() == v1::DATA_FORMAT_JSONL && !jsonl_name) {
      return Unsupported(field + ".format", absl::StrCat("JSONL in \"", f.substr(root.size() + 1),
                                                         "\" (not named .jsonl)"));
    }
    if (source.format() == v1::DATA_FORMAT_TEXT && jsonl_name) {
      return Unsupported(
          field + ".format",
          absl::StrCat("plain text in \"", f.substr(root.size() + 1), "\" (named .jsonl)"));
    }
  }
  const v1::JsonlFields& j = source.fields();
  if (!(j.text().empty() || j.text() == "text") ||
      !(j.messages().empty() || j.messages() == "messages") || !j.prompt().empty() ||
      !j.response().empty()) {
    return Unsupported(field + ".fields",
                       "a JSONL layout other than a \"text\" or a \"messages\" field");
  }
  if (source.max_documents() != 0) return Unsupported(field + ".max_documents", "a document limit");
  return files;
}

convert::StageOptions StageFor(const v1::TrainingParams& t, int64_t steps,
                               convert::StageOptions base) {
  base.lr = t.has_learning_rate() ? t.learning_rate() : base.lr;
  base.weight_decay = t.weight_decay();
  switch (t.lr_schedule()) {
    case v1::LR_SCHEDULE_COSINE:
      base.schedule = convert::Schedule::kCosine;
      break;
    case v1::LR_SCHEDULE_REDUCE_ON_PLATEAU:
      base.schedule = convert::Schedule::kPlateau;
      break;
    case v1::LR_SCHEDULE_CONSTANT:
      // A plateau schedule that never reduces.
      base.schedule = convert::Schedule::kPlateau;
      base.plateau_patience = std::numeric_limits<int64_t>::max();
      break;
    default:
      break;
  }
  base.warmup_fraction =
      steps > 0 ? std::min(0.99, static_cast<double>(t.warmup_steps()) / static_cast<double>(steps))
                : 0.0;
  if (t.validation_interval_steps() > 0) base.eval_every = t.validation_interval_steps();
  if (t.has_early_stopping_patience()) base.early_stop_patience = t.early_stopping_patience();
  return base;
}

}  // namespace

int64_t TokensPerStep(const convert::ConvertOptions& o) {
  return o.batch_size * o.grad_accum * o.data.seq_len;
}

int64_t PlannedSteps(const convert::ConvertOptions& o, int stage) {
  // As Pipeline::Run computes them.
  const bool transfer = o.attention.recipe != model::Recipe::kLinear;
  const int64_t per_step = std::max<int64_t>(1, TokensPerStep(o));
  const int64_t tokens1 = transfer ? o.tokens / 2 : 0;
  if (stage == 1) return transfer ? std::max<int64_t>(1, tokens1 / per_step) : 0;
  return std::max<int64_t>(1, (o.tokens - tokens1) / per_step);
}

absl::StatusOr<convert::ConvertOptions> ConvertOptionsForTask(const v1::Task& task,
                                                              const std::string& root) {
  const v1::ConversionSpec& spec = task.spec();
  const v1::Recipe& recipe = spec.recipe();
  convert::ConvertOptions o;

  absl::StatusOr<std::string> teacher =
      server::ResolveExistingUnderRoot(root, task.teacher_path(), "teacher_path");
  if (!teacher.ok()) return teacher.status();
  o.teacher = *teacher;

  // The attention.
  switch (recipe.kind()) {
    case v1::RECIPE_KIND_LOLCATS: {
      o.attention = model::DefaultLinearAttentionConfig(model::Recipe::kLolcats);
      const v1::LolcatsParams& p = recipe.lolcats();
      if (p.feature_dim() > 0) o.attention.feature_dim = p.feature_dim();
      if (p.window_size() > 0) o.attention.window = p.window_size();
      o.attention.terrace = p.window_kind() != v1::LolcatsParams::WINDOW_KIND_SLIDING;
      if (p.has_window_factor_init() && std::abs(p.window_factor_init() - 0.1f) > 1e-6f) {
        return Unsupported("spec.recipe.lolcats.window_factor_init", "a value other than 0.1");
      }
      break;
    }
    case v1::RECIPE_KIND_LIZARD: {
      o.attention = model::DefaultLinearAttentionConfig(model::Recipe::kLizard);
      const v1::LizardParams& p = recipe.lizard();
      if (p.feature_dim() > 0) o.attention.feature_dim = p.feature_dim();
      if (p.window_size() > 0) o.attention.window = p.window_size();
      if (p.meta_memory_tokens() > 0) o.attention.meta_tokens = p.meta_memory_tokens();
      if (p.has_window_weight_init() && std::abs(p.window_weight_init() - 1.0f) > 1e-6f) {
        return Unsupported("spec.recipe.lizard.window_weight_init", "a value other than 1.0");
      }
      break;
    }
    case v1::RECIPE_KIND_LINEAR_BASELINE:
      o.attention = model::DefaultLinearAttentionConfig(model::Recipe::kLinear);
      if (recipe.linear_baseline().feature_map() == v1::LinearBaselineParams::FEATURE_MAP_RELU) {
        return Unsupported("spec.recipe.linear_baseline.feature_map", "FEATURE_MAP_RELU");
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.recipe.kind: not a recipe (", static_cast<int>(recipe.kind()), ")"));
  }
  // Hardware and precision: the task's GPUs (the scheduler sets 0 for
  // cpu_only jobs) and the spec's precision (its default: bf16 on a GPU).
  if (task.gpus() > 1) {
    return Unsupported("spec.budget.gpus_per_task",
                       absl::StrCat(task.gpus(), " GPUs per task (data parallel training)"));
  }
  o.device = task.gpus() == 1 ? "cuda" : "cpu";
  switch (spec.precision()) {
    case v1::PRECISION_FP16:
      return Unsupported("spec.precision", "PRECISION_FP16 (use PRECISION_BF16)");
    case v1::PRECISION_BF16:
      o.bf16 = true;
      break;
    case v1::PRECISION_FP32:
      o.bf16 = false;
      break;
    default:
      o.bf16 = task.gpus() > 0;
      break;
  }

  const bool transfer = recipe.kind() != v1::RECIPE_KIND_LINEAR_BASELINE;
  const v1::AttentionTransferParams& at = recipe.attention_transfer();
  const v1::FinetuneParams& ft = recipe.finetune();
  if (transfer && at.training().skip()) {
    return Unsupported("spec.recipe.attention_transfer.training.skip",
                       "skipping stage 1 of a LoLCATs or Lizard conversion");
  }
  if (ft.training().skip()) {
    return Unsupported("spec.recipe.finetune.training.skip", "skipping stage 2");
  }
  if (task.has_layer_block()) {  // stage 1 split into layer blocks: this task's block
    o.block_first = task.layer_block().first_layer();
    o.block_count = task.layer_block().num_layers();
  }
  if (transfer && at.has_attention_xent_weight()) o.xent_weight = at.attention_xent_weight();
  if (spec.has_init_from()) {  // the scheduler stored it as an artifact path
    if (!spec.init_from().has_artifact_path()) {
      return absl::InvalidArgumentError(
          "spec.init_from: not resolved to an artifact_path (the scheduler does it at submission)");
    }
    absl::StatusOr<std::string> from = server::ResolveExistingUnderRoot(
        root, spec.init_from().artifact_path(), "spec.init_from.artifact_path");
    if (!from.ok()) return from.status();
    o.init_from = *from;
  }

  // One budget, sequence length, batch and seed for both stages.
  const v1::TrainingParams& lead = transfer ? at.training() : ft.training();
  o.tokens = ft.training().token_budget() + (transfer ? at.training().token_budget() : 0);
  if (o.tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.recipe.*.training.token_budget: the stages' budgets sum to ", o.tokens));
  }
  o.data.seq_len = lead.sequence_length() > 0 ? lead.sequence_length() : 1024;
  o.batch_size = lead.batch_size() > 0 ? lead.batch_size() : 8;
  o.grad_accum = 1;
  o.seed = lead.has_seed() ? lead.seed() : 0;
  o.stage1 = StageFor(at.training(), PlannedSteps(o, 1), o.stage1);
  o.stage2 = StageFor(ft.training(), PlannedSteps(o, 2), o.stage2);
  if (at.has_mse_weight()) o.mse_weight = at.mse_weight();
  // A checkpoint every checkpoint_interval_steps of whichever stage runs
  // (not part of the fingerprint, so tasks may differ).
  int64_t every = ft.training().checkpoint_interval_steps();
  if (transfer && at.training().checkpoint_interval_steps() > 0) {
    every = every > 0 ? std::min<int64_t>(every, at.training().checkpoint_interval_steps())
                      : at.training().checkpoint_interval_steps();
  }
  o.checkpoint_every = every > 0 ? every : 500;

  // LoRA.
  const v1::LoraParams& lora = ft.lora();
  if (lora.rank() > 0) o.lora.rank = lora.rank();
  if (lora.has_alpha()) o.lora.alpha = lora.alpha();
  if (lora.has_dropout()) o.lora.dropout = lora.dropout();
  if (lora.target_modules_size() > 0) {
    o.lora.targets.clear();
    for (int i = 0; i < lora.target_modules_size(); ++i) {
      absl::StatusOr<model::LoraTarget> t = model::ParseLoraTarget(lora.target_modules(i));
      if (!t.ok()) {
        return Unsupported(absl::StrCat("spec.recipe.finetune.lora.target_modules[", i, "]"),
                           absl::StrCat("\"", lora.target_modules(i),
                                        "\" (only q_proj, k_proj, "
                                        "v_proj and o_proj take adapters)"));
      }
      o.lora.targets.push_back(*t);
    }
  }
  // The export always folds the LoRA into the weights; without merge_lora
  // the adapters are also written as separate (PEFT) tensors.
  o.peft = !ft.merge_lora();

  // Data.
  const v1::DataSpec& d = spec.data();
  if (d.validation_size() > 0) {
    return Unsupported("spec.data.validation",
                       "separate validation files (use spec.data.validation_fraction)");
  }
  double weight = -1;
  for (int i = 0; i < d.train_size(); ++i) {
    const std::string field = absl::StrCat("spec.data.train[", i, "]");
    const double w = d.train(i).weight() > 0 ? d.train(i).weight() : 1.0;
    if (weight >= 0 && std::abs(w - weight) > 1e-12) {
      return Unsupported(field + ".weight", "mixing sources with different weights");
    }
    weight = w;
    absl::StatusOr<std::vector<std::string>> files = SourceFiles(d.train(i), root, field);
    if (!files.ok()) return files.status();
    o.data.files.insert(o.data.files.end(), files->begin(), files->end());
  }
  const v1::SelfDistillation& sd = d.self_distillation();
  if (sd.enabled()) {
    if (!o.data.files.empty()) {
      return Unsupported("spec.data.self_distillation", "mixing generated text with data.train");
    }
    if (sd.has_prompts()) return Unsupported("spec.data.self_distillation.prompts", "prompts");
    const int64_t tokens = sd.num_tokens() > 0 ? sd.num_tokens() : o.tokens;
    o.data.self_distill_sequences = std::max<int64_t>(2, tokens / o.data.seq_len);
  } else if (o.data.files.empty()) {
    return absl::InvalidArgumentError(
        "spec.data.train: no training data and self-distillation is off");
  }
  const double fraction = d.has_validation_fraction() ? d.validation_fraction() : 0.01;
  o.data.validation_fraction = std::clamp(fraction, 1e-9, 0.5);
  o.data.seed = d.has_shuffle_seed() ? d.shuffle_seed() : o.seed;
  return o;
}

}  // namespace linearize::worker
