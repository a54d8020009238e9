#include "services/scheduler/spec_validation.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/scheduler/artifact_root.h"
#include "services/scheduler/field_checks.h"

namespace linearize::scheduler {
namespace {

namespace v1 = ::linearize::v1;

#define LZ_RETURN_IF_ERROR(expr)         \
  do {                                   \
    absl::Status _lz_status = (expr);    \
    if (!_lz_status.ok()) return _lz_status; \
  } while (0)

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// value in [lo, hi], or 0 when zero_means is given ("0 means ...").
absl::Status Range(int64_t value, int64_t lo, int64_t hi, const std::string& field,
                   const std::string& zero_means = "") {
  if (value == 0 && !zero_means.empty()) return absl::OkStatus();
  if (value < lo || value > hi) {
    return Bad(field, absl::StrCat("must be in [", lo, ", ", hi, "]",
                                   zero_means.empty() ? "" : absl::StrCat(" (0 means ", zero_means, ")"),
                                   ", got ", value));
  }
  return absl::OkStatus();
}

absl::Status NotNegative(int64_t value, const std::string& field) {
  if (value < 0) return Bad(field, absl::StrCat("must not be negative, got ", value));
  return absl::OkStatus();
}

// A real number in a range; `open_lo`/`open_hi` exclude the bound.
absl::Status RealRange(double value, double lo, bool open_lo, double hi, bool open_hi,
                       const std::string& field) {
  bool ok = std::isfinite(value) && (open_lo ? value > lo : value >= lo) &&
            (open_hi ? value < hi : value <= hi);
  if (!ok) {
    return Bad(field, absl::StrCat("must be in ", open_lo ? "(" : "[", lo, ", ", hi,
                                   open_hi ? ")" : "]", ", got ", value));
  }
  return absl::OkStatus();
}

absl::Status Positive(double value, const std::string& field) {
  if (!std::isfinite(value) || value <= 0) {
    return Bad(field, absl::StrCat("must be positive, got ", value));
  }
  return absl::OkStatus();
}

template <typename IsValid>
absl::Status Enum(int value, IsValid is_valid, const std::string& field) {
  if (!is_valid(value)) return Bad(field, absl::StrCat("unknown value ", value));
  return absl::OkStatus();
}

absl::Status MaxCount(int count, int max, const std::string& field) {
  if (count > max) return Bad(field, absl::StrCat("at most ", max, " entries, got ", count));
  return absl::OkStatus();
}

absl::Status Duration(const google::protobuf::Duration& d, const std::string& field) {
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() > 999999999) {
    return Bad(field, "must be a non-negative duration");
  }
  return absl::OkStatus();
}

// Weights only mix training sources; elsewhere they are accepted and ignored.
absl::Status CheckTextSource(const v1::TextSource& s, const std::string& field, bool /*training*/) {
  LZ_RETURN_IF_ERROR(ArtifactRoot::CheckForm(s.path(), field + ".path"));
  LZ_RETURN_IF_ERROR(Enum(s.format(), v1::DataFormat_IsValid, field + ".format"));
  const v1::JsonlFields& f = s.fields();
  for (const auto& [name, value] : {std::pair<const char*, const std::string&>{"text", f.text()},
                                    {"messages", f.messages()},
                                    {"prompt", f.prompt()},
                                    {"response", f.response()}}) {
    LZ_RETURN_IF_ERROR(CheckText(value, 256, absl::StrCat(field, ".fields.", name)));
  }
  int layouts = !f.text().empty() + !f.messages().empty() +
                (!f.prompt().empty() || !f.response().empty());
  if (layouts > 1) {
    return Bad(field + ".fields", "set only one layout: text, messages, or prompt with response");
  }
  if (f.prompt().empty() != f.response().empty()) {
    return Bad(field + ".fields", "prompt and response must be set together");
  }
  if (!std::isfinite(s.weight()) || s.weight() < 0) {
    return Bad(field + ".weight", absl::StrCat("must not be negative, got ", s.weight()));
  }
  return NotNegative(s.max_documents(), field + ".max_documents");
}

absl::Status CheckTraining(const v1::TrainingParams& t, const std::string& field) {
  LZ_RETURN_IF_ERROR(Range(t.token_budget(), 1, 1'000'000'000'000, field + ".token_budget",
                           "the recipe default"));
  LZ_RETURN_IF_ERROR(Range(t.sequence_length(), 16, 131072, field + ".sequence_length",
                           "the recipe default"));
  LZ_RETURN_IF_ERROR(Range(t.batch_size(), 1, 4096, field + ".batch_size", "8"));
  if (t.has_learning_rate()) {
    LZ_RETURN_IF_ERROR(RealRange(t.learning_rate(), 0, true, 1, false, field + ".learning_rate"));
  }
  if (t.has_weight_decay()) {
    LZ_RETURN_IF_ERROR(RealRange(t.weight_decay(), 0, false, 1, false, field + ".weight_decay"));
  }
  LZ_RETURN_IF_ERROR(Enum(t.lr_schedule(), v1::LrSchedule_IsValid, field + ".lr_schedule"));
  LZ_RETURN_IF_ERROR(NotNegative(t.warmup_steps(), field + ".warmup_steps"));
  LZ_RETURN_IF_ERROR(NotNegative(t.validation_interval_steps(),
                                 field + ".validation_interval_steps"));
  if (t.has_early_stopping_patience()) {
    LZ_RETURN_IF_ERROR(NotNegative(t.early_stopping_patience(),
                                   field + ".early_stopping_patience"));
  }
  return NotNegative(t.checkpoint_interval_steps(), field + ".checkpoint_interval_steps");
}

absl::Status CheckRecipe(const v1::Recipe& r) {
  const std::string f = "spec.recipe";
  if (r.kind() == v1::RECIPE_KIND_UNSPECIFIED) {
    return Bad(f + ".kind", "required: RECIPE_KIND_LOLCATS, RECIPE_KIND_LIZARD or "
                            "RECIPE_KIND_LINEAR_BASELINE");
  }
  if (!v1::RecipeKind_IsValid(r.kind())) {
    return Bad(f + ".kind", absl::StrCat("unknown recipe ", r.kind()));
  }
  const char* expected = r.kind() == v1::RECIPE_KIND_LOLCATS  ? "lolcats"
                         : r.kind() == v1::RECIPE_KIND_LIZARD ? "lizard"
                                                              : "linear_baseline";
  auto mismatch = [&](const char* set) {
    return Bad(absl::StrCat(f, ".", set),
               absl::StrCat("does not match spec.recipe.kind ", v1::RecipeKind_Name(r.kind()),
                            " (set spec.recipe.", expected, " or leave the params unset)"));
  };
  switch (r.params_case()) {
    case v1::Recipe::kLolcats: {
      if (r.kind() != v1::RECIPE_KIND_LOLCATS) return mismatch("lolcats");
      const v1::LolcatsParams& p = r.lolcats();
      LZ_RETURN_IF_ERROR(Range(p.feature_dim(), 1, 1024, f + ".lolcats.feature_dim", "64"));
      LZ_RETURN_IF_ERROR(Range(p.window_size(), 1, 8192, f + ".lolcats.window_size", "64"));
      LZ_RETURN_IF_ERROR(Enum(p.window_kind(), v1::LolcatsParams::WindowKind_IsValid,
                              f + ".lolcats.window_kind"));
      if (p.has_window_factor_init()) {
        LZ_RETURN_IF_ERROR(RealRange(p.window_factor_init(), 0, true, 1, true,
                                     f + ".lolcats.window_factor_init"));
      }
      break;
    }
    case v1::Recipe::kLizard: {
      if (r.kind() != v1::RECIPE_KIND_LIZARD) return mismatch("lizard");
      const v1::LizardParams& p = r.lizard();
      LZ_RETURN_IF_ERROR(Range(p.feature_dim(), 1, 1024, f + ".lizard.feature_dim", "64"));
      LZ_RETURN_IF_ERROR(Range(p.window_size(), 1, 8192, f + ".lizard.window_size", "128"));
      LZ_RETURN_IF_ERROR(Range(p.meta_memory_tokens(), 1, 64, f + ".lizard.meta_memory_tokens",
                               "4"));
      if (p.has_window_weight_init()) {
        LZ_RETURN_IF_ERROR(Positive(p.window_weight_init(), f + ".lizard.window_weight_init"));
      }
      break;
    }
    case v1::Recipe::kLinearBaseline:
      if (r.kind() != v1::RECIPE_KIND_LINEAR_BASELINE) return mismatch("linear_baseline");
      LZ_RETURN_IF_ERROR(Enum(r.linear_baseline().feature_map(),
                              v1::LinearBaselineParams::FeatureMap_IsValid,
                              f + ".linear_baseline.feature_map"));
      break;
    default:
      break;
  }
  const v1::AttentionTransferParams& at = r.attention_transfer();
  LZ_RETURN_IF_ERROR(CheckTraining(at.training(), f + ".attention_transfer.training"));
  if (at.has_mse_weight() && (!std::isfinite(at.mse_weight()) || at.mse_weight() < 0)) {
    return Bad(f + ".attention_transfer.mse_weight",
               absl::StrCat("must not be negative, got ", at.mse_weight()));
  }
  if (at.has_attention_xent_weight() &&
      (!std::isfinite(at.attention_xent_weight()) || at.attention_xent_weight() < 0)) {
    return Bad(f + ".attention_transfer.attention_xent_weight",
               absl::StrCat("must not be negative, got ", at.attention_xent_weight()));
  }
  LZ_RETURN_IF_ERROR(NotNegative(at.layers_per_block(), f + ".attention_transfer.layers_per_block"));

  const v1::FinetuneParams& ft = r.finetune();
  LZ_RETURN_IF_ERROR(CheckTraining(ft.training(), f + ".finetune.training"));
  const v1::LoraParams& lora = ft.lora();
  LZ_RETURN_IF_ERROR(Range(lora.rank(), 1, 256, f + ".finetune.lora.rank", "8"));
  if (lora.has_alpha()) LZ_RETURN_IF_ERROR(Positive(lora.alpha(), f + ".finetune.lora.alpha"));
  if (lora.has_dropout()) {
    LZ_RETURN_IF_ERROR(RealRange(lora.dropout(), 0, false, 1, true, f + ".finetune.lora.dropout"));
  }
  static const std::set<std::string> kModules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  LZ_RETURN_IF_ERROR(MaxCount(lora.target_modules_size(), 7, f + ".finetune.lora.target_modules"));
  std::set<std::string> seen;
  for (int i = 0; i < lora.target_modules_size(); ++i) {
    const std::string& m = lora.target_modules(i);
    const std::string field = absl::StrCat(f, ".finetune.lora.target_modules[", i, "]");
    if (!kModules.count(m)) {
      return Bad(field, absl::StrCat("unknown module \"", m.substr(0, 64),
                                     "\"; use q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                     "up_proj or down_proj"));
    }
    if (!seen.insert(m).second) return Bad(field, absl::StrCat("\"", m, "\" is listed twice"));
  }
  return absl::OkStatus();
}

absl::Status CheckData(const v1::DataSpec& d) {
  const std::string f = "spec.data";
  const v1::SelfDistillation& sd = d.self_distillation();
  if (d.train_size() == 0 && !sd.enabled()) {
    return Bad(f + ".train", "at least one source is required unless "
                             "spec.data.self_distillation.enabled is set");
  }
  LZ_RETURN_IF_ERROR(MaxCount(d.train_size(), 256, f + ".train"));
  LZ_RETURN_IF_ERROR(MaxCount(d.validation_size(), 256, f + ".validation"));
  for (int i = 0; i < d.train_size(); ++i) {
    LZ_RETURN_IF_ERROR(CheckTextSource(d.train(i), absl::StrCat(f, ".train[", i, "]"), true));
  }
  for (int i = 0; i < d.validation_size(); ++i) {
    LZ_RETURN_IF_ERROR(
        CheckTextSource(d.validation(i), absl::StrCat(f, ".validation[", i, "]"), false));
  }
  if (d.has_validation_fraction()) {
    LZ_RETURN_IF_ERROR(RealRange(d.validation_fraction(), 0, false, 0.5, false,
                                 f + ".validation_fraction"));
  }
  LZ_RETURN_IF_ERROR(NotNegative(sd.num_tokens(), f + ".self_distillation.num_tokens"));
  if (sd.has_prompts()) {
    LZ_RETURN_IF_ERROR(CheckTextSource(sd.prompts(), f + ".self_distillation.prompts", false));
  }
  if (sd.has_temperature()) {
    LZ_RETURN_IF_ERROR(RealRange(sd.temperature(), 0, false, 2, false,
                                 f + ".self_distillation.temperature"));
  }
  if (sd.has_top_p()) {
    LZ_RETURN_IF_ERROR(RealRange(sd.top_p(), 0, true, 1, false, f + ".self_distillation.top_p"));
  }
  return NotNegative(sd.max_new_tokens(), f + ".self_distillation.max_new_tokens");
}

absl::Status CheckBudget(const v1::Budget& b) {
  const std::string f = "spec.budget";
  LZ_RETURN_IF_ERROR(NotNegative(b.max_tokens(), f + ".max_tokens"));
  LZ_RETURN_IF_ERROR(Duration(b.max_wall_time(), f + ".max_wall_time"));
  if (b.max_wall_time().seconds() > 30 * 86400 ||
      (b.max_wall_time().seconds() == 30 * 86400 && b.max_wall_time().nanos() > 0)) {
    return Bad(f + ".max_wall_time",
               absl::StrCat("at most 30 days, got ", b.max_wall_time().seconds(), " s"));
  }
  LZ_RETURN_IF_ERROR(Range(b.gpus_per_task(), 0, 64, f + ".gpus_per_task"));
  if (b.cpu_only() && b.gpus_per_task() != 0) {
    return Bad(f + ".gpus_per_task",
               absl::StrCat("must be 0 with spec.budget.cpu_only, got ", b.gpus_per_task()));
  }
  LZ_RETURN_IF_ERROR(NotNegative(b.min_gpu_memory_bytes(), f + ".min_gpu_memory_bytes"));
  return NotNegative(b.max_parallel_tasks(), f + ".max_parallel_tasks");
}

absl::Status CheckEvaluationTasks(const v1::ConversionSpec& spec) {
  const std::string f = "spec.evaluation_tasks";
  LZ_RETURN_IF_ERROR(MaxCount(spec.evaluation_tasks_size(), 64, f));
  std::set<std::string> names;
  for (int i = 0; i < spec.evaluation_tasks_size(); ++i) {
    const v1::EvaluationTask& t = spec.evaluation_tasks(i);
    const std::string tf = absl::StrCat(f, "[", i, "]");
    if (!t.name().empty()) {
      bool ok = t.name().size() <= 64;
      for (char c : t.name()) {
        ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '-');
      }
      if (!ok) return Bad(tf + ".name", "must be 1 to 64 characters from [a-z0-9_-]");
      if (!names.insert(t.name()).second) {
        return Bad(tf + ".name", absl::StrCat("\"", t.name(), "\" is used twice"));
      }
    }
    switch (t.task_case()) {
      case v1::EvaluationTask::kPerplexity: {
        const v1::PerplexityTask& p = t.perplexity();
        LZ_RETURN_IF_ERROR(MaxCount(p.sources_size(), 256, tf + ".perplexity.sources"));
        for (int k = 0; k < p.sources_size(); ++k) {
          LZ_RETURN_IF_ERROR(CheckTextSource(
              p.sources(k), absl::StrCat(tf, ".perplexity.sources[", k, "]"), false));
        }
        LZ_RETURN_IF_ERROR(Range(p.sequence_length(), 16, 1048576,
                                 tf + ".perplexity.sequence_length", "1024"));
        LZ_RETURN_IF_ERROR(NotNegative(p.stride(), tf + ".perplexity.stride"));
        LZ_RETURN_IF_ERROR(Range(p.max_tokens(), 1, 1'000'000'000, tf + ".perplexity.max_tokens",
                                 "1000000"));
        break;
      }
      case v1::EvaluationTask::kRecall: {
        const v1::RecallTask& r = t.recall();
        LZ_RETURN_IF_ERROR(Enum(r.kind(), v1::RecallTask::Kind_IsValid, tf + ".recall.kind"));
        LZ_RETURN_IF_ERROR(MaxCount(r.context_lengths_size(), 64, tf + ".recall.context_lengths"));
        for (int k = 0; k < r.context_lengths_size(); ++k) {
          LZ_RETURN_IF_ERROR(Range(r.context_lengths(k), 64, 1048576,
                                   absl::StrCat(tf, ".recall.context_lengths[", k, "]")));
        }
        LZ_RETURN_IF_ERROR(Range(r.num_samples(), 1, 10000, tf + ".recall.num_samples", "50"));
        LZ_RETURN_IF_ERROR(Range(r.num_pairs(), 1, 1024, tf + ".recall.num_pairs", "16"));
        break;
      }
      case v1::EvaluationTask::kMultipleChoice: {
        const v1::MultipleChoiceTask& m = t.multiple_choice();
        const std::string mf = tf + ".multiple_choice";
        if (m.paths_size() == 0) return Bad(mf + ".paths", "at least one JSONL file is required");
        LZ_RETURN_IF_ERROR(MaxCount(m.paths_size(), 256, mf + ".paths"));
        for (int k = 0; k < m.paths_size(); ++k) {
          LZ_RETURN_IF_ERROR(
              ArtifactRoot::CheckForm(m.paths(k), absl::StrCat(mf, ".paths[", k, "]")));
        }
        LZ_RETURN_IF_ERROR(CheckText(m.question_field(), 256, mf + ".question_field"));
        LZ_RETURN_IF_ERROR(CheckText(m.choices_field(), 256, mf + ".choices_field"));
        LZ_RETURN_IF_ERROR(CheckText(m.answer_field(), 256, mf + ".answer_field"));
        LZ_RETURN_IF_ERROR(Range(m.num_shots(), 0, 25, mf + ".num_shots"));
        if (!m.shots_path().empty()) {
          LZ_RETURN_IF_ERROR(ArtifactRoot::CheckForm(m.shots_path(), mf + ".shots_path"));
        }
        LZ_RETURN_IF_ERROR(NotNegative(m.limit(), mf + ".limit"));
        break;
      }
      default:
        return Bad(tf, "set exactly one of perplexity, recall or multiple_choice");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTeacher(const v1::ModelRef& t) {
  switch (t.source_case()) {
    case v1::ModelRef::kArtifactPath:
      return ArtifactRoot::CheckForm(t.artifact_path(), "spec.teacher.artifact_path");
    case v1::ModelRef::kModelName:
      return CheckModelName(t.model_name(), "spec.teacher.model_name");
    case v1::ModelRef::kJobId:
      return CheckId(t.job_id(), "spec.teacher.job_id");
    default:
      return Bad("spec.teacher", "required: set artifact_path, model_name or job_id");
  }
}

size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

}  // namespace

absl::Status ValidateSubmitRequest(const v1::SubmitConversionRequest& request) {
  if (!request.has_spec()) return Bad("spec", "required");
  const v1::ConversionSpec& spec = request.spec();
  LZ_RETURN_IF_ERROR(CheckTeacher(spec.teacher()));
  if (!spec.has_recipe()) return Bad("spec.recipe", "required (spec.recipe.kind must be set)");
  LZ_RETURN_IF_ERROR(CheckRecipe(spec.recipe()));
  LZ_RETURN_IF_ERROR(CheckData(spec.data()));
  LZ_RETURN_IF_ERROR(CheckBudget(spec.budget()));
  LZ_RETURN_IF_ERROR(CheckEvaluationTasks(spec));
  if (!spec.output_model_name().empty()) {
    LZ_RETURN_IF_ERROR(CheckModelName(spec.output_model_name(), "spec.output_model_name"));
  }
  LZ_RETURN_IF_ERROR(Enum(spec.precision(), v1::Precision_IsValid, "spec.precision"));

  LZ_RETURN_IF_ERROR(CheckText(request.display_name(), 1024, "display_name"));
  if (Utf8Length(request.display_name()) > 256) {
    return Bad("display_name", absl::StrCat("at most 256 characters, got ",
                                            Utf8Length(request.display_name())));
  }
  LZ_RETURN_IF_ERROR(Range(request.priority(), -100, 100, "priority"));
  LZ_RETURN_IF_ERROR(CheckLabels(request.labels(), "labels"));
  return CheckRequestId(request.request_id(), "request_id");
}

}  // namespace linearize::scheduler
