#include "services/scheduler/spec_defaults.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "linearize/v1/evaluation.pb.h"

namespace linearize::scheduler {
namespace {

namespace v1 = ::linearize::v1;

struct StageDefaults {
  int64_t tokens;
  int32_t sequence_length;
  double learning_rate;
  v1::LrSchedule schedule;
  int32_t patience;  // early stopping; 0 disables
};

// Recipe defaults (conversion.proto, TrainingParams).
StageDefaults Stage1(v1::RecipeKind kind) {
  if (kind == v1::RECIPE_KIND_LIZARD) return {20'000'000, 2048, 1e-3, v1::LR_SCHEDULE_COSINE, 0};
  return {20'000'000, 1024, 1e-2, v1::LR_SCHEDULE_REDUCE_ON_PLATEAU, 10};
}
StageDefaults Stage2(v1::RecipeKind kind) {
  if (kind == v1::RECIPE_KIND_LIZARD) return {20'000'000, 2048, 1e-4, v1::LR_SCHEDULE_COSINE, 0};
  return {20'000'000, 1024, 1e-4, v1::LR_SCHEDULE_CONSTANT, 0};
}

void FillTraining(v1::TrainingParams* t, const StageDefaults& d, uint64_t seed) {
  if (t->token_budget() == 0) t->set_token_budget(d.tokens);
  if (t->sequence_length() == 0) t->set_sequence_length(d.sequence_length);
  if (t->batch_size() == 0) t->set_batch_size(8);
  if (!t->has_learning_rate()) t->set_learning_rate(d.learning_rate);
  if (!t->has_weight_decay()) t->set_weight_decay(0.0);
  if (t->lr_schedule() == v1::LR_SCHEDULE_UNSPECIFIED) t->set_lr_schedule(d.schedule);
  if (t->validation_interval_steps() == 0) {
    // About 20 validations per stage.
    const int64_t steps =
        t->token_budget() / (int64_t{t->sequence_length()} * t->batch_size());
    t->set_validation_interval_steps(static_cast<int32_t>(std::clamp<int64_t>(steps / 20, 1, 1 << 30)));
  }
  if (!t->has_early_stopping_patience()) t->set_early_stopping_patience(d.patience);
  if (t->checkpoint_interval_steps() == 0) t->set_checkpoint_interval_steps(500);
  if (!t->has_seed()) t->set_seed(seed);
}

void FillTextSource(v1::TextSource* s) {
  if (s->weight() == 0) s->set_weight(1.0);
}

void FillEvaluationTasks(v1::ConversionSpec* spec) {
  if (spec->skip_evaluation()) return;
  if (spec->evaluation_tasks().empty()) {
    // One perplexity task on the validation data and passkey recall.
    spec->add_evaluation_tasks()->mutable_perplexity();
    v1::RecallTask* recall = spec->add_evaluation_tasks()->mutable_recall();
    for (int len : {512, 1024, 2048}) recall->add_context_lengths(len);
  }
  std::map<std::string, int> uses;
  for (const v1::EvaluationTask& t : spec->evaluation_tasks()) {
    if (!t.name().empty()) ++uses[t.name()];
  }
  for (v1::EvaluationTask& t : *spec->mutable_evaluation_tasks()) {
    const char* base = t.has_perplexity() ? "perplexity"
                       : t.has_recall()   ? "recall"
                                          : "multiple_choice";
    if (t.name().empty()) {
      // "perplexity", then "perplexity_2", ... skipping names taken.
      for (int n = 1;; ++n) {
        std::string name = n == 1 ? std::string(base) : absl::StrCat(base, "_", n);
        if (uses[name] == 0) {
          ++uses[name];
          t.set_name(name);
          break;
        }
      }
    }
    if (t.has_perplexity()) {
      v1::PerplexityTask* p = t.mutable_perplexity();
      if (p->sequence_length() == 0) p->set_sequence_length(1024);
      if (p->stride() == 0) p->set_stride(p->sequence_length());
      if (p->max_tokens() == 0) p->set_max_tokens(1'000'000);
      for (v1::TextSource& s : *p->mutable_sources()) FillTextSource(&s);
    } else if (t.has_recall()) {
      v1::RecallTask* r = t.mutable_recall();
      if (r->kind() == v1::RecallTask::KIND_UNSPECIFIED) r->set_kind(v1::RecallTask::KIND_PASSKEY);
      if (r->context_lengths().empty()) {
        for (int len : {512, 1024, 2048, 4096}) r->add_context_lengths(len);
      }
      if (r->num_samples() == 0) r->set_num_samples(50);
      if (r->num_pairs() == 0) r->set_num_pairs(16);
    } else if (t.has_multiple_choice()) {
      v1::MultipleChoiceTask* m = t.mutable_multiple_choice();
      if (m->question_field().empty()) m->set_question_field("question");
      if (m->choices_field().empty()) m->set_choices_field("choices");
      if (m->answer_field().empty()) m->set_answer_field("answer");
    }
  }
}

}  // namespace

uint64_t StableHash(const std::string& text) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void FillSpecDefaults(v1::ConversionSpec* spec, const std::string& job_id) {
  const uint64_t seed = StableHash(job_id);
  v1::Recipe* r = spec->mutable_recipe();
  const v1::RecipeKind kind = r->kind();
  switch (kind) {
    case v1::RECIPE_KIND_LOLCATS: {
      v1::LolcatsParams* p = r->mutable_lolcats();
      if (p->feature_dim() == 0) p->set_feature_dim(64);
      if (p->window_size() == 0) p->set_window_size(64);
      if (p->window_kind() == v1::LolcatsParams::WINDOW_KIND_UNSPECIFIED) {
        p->set_window_kind(v1::LolcatsParams::WINDOW_KIND_BLOCKED);
      }
      if (!p->has_window_factor_init()) p->set_window_factor_init(0.1f);
      break;
    }
    case v1::RECIPE_KIND_LIZARD: {
      v1::LizardParams* p = r->mutable_lizard();
      if (p->feature_dim() == 0) p->set_feature_dim(64);
      if (p->window_size() == 0) p->set_window_size(128);
      if (p->meta_memory_tokens() == 0) p->set_meta_memory_tokens(4);
      if (!p->has_window_weight_init()) p->set_window_weight_init(1.0f);
      break;
    }
    default: {
      v1::LinearBaselineParams* p = r->mutable_linear_baseline();
      if (p->feature_map() == v1::LinearBaselineParams::FEATURE_MAP_UNSPECIFIED) {
        p->set_feature_map(v1::LinearBaselineParams::FEATURE_MAP_ELU_PLUS_ONE);
      }
      // Nothing to transfer: stage 1 does not run.
      r->mutable_attention_transfer()->mutable_training()->set_skip(true);
      break;
    }
  }
  v1::AttentionTransferParams* at = r->mutable_attention_transfer();
  FillTraining(at->mutable_training(), Stage1(kind), seed);
  if (!at->has_mse_weight()) at->set_mse_weight(1000.0);
  if (!at->has_attention_xent_weight()) at->set_attention_xent_weight(0.0);

  v1::FinetuneParams* ft = r->mutable_finetune();
  FillTraining(ft->mutable_training(), Stage2(kind), seed + 1);
  v1::LoraParams* lora = ft->mutable_lora();
  if (lora->rank() == 0) lora->set_rank(8);
  if (!lora->has_alpha()) lora->set_alpha(16.0f);
  if (!lora->has_dropout()) lora->set_dropout(0.0f);
  if (lora->target_modules().empty()) {
    for (const char* m : {"q_proj", "k_proj", "v_proj"}) lora->add_target_modules(m);
    if (kind != v1::RECIPE_KIND_LIZARD) lora->add_target_modules("o_proj");
  }

  v1::DataSpec* data = spec->mutable_data();
  for (v1::TextSource& s : *data->mutable_train()) FillTextSource(&s);
  if (!data->has_validation_fraction()) data->set_validation_fraction(0.01);
  if (!data->has_shuffle_seed()) data->set_shuffle_seed(seed + 2);
  v1::SelfDistillation* sd = data->mutable_self_distillation();
  if (sd->enabled()) {
    if (sd->num_tokens() == 0) {
      sd->set_num_tokens(std::max(at->training().skip() ? 0 : at->training().token_budget(),
                                  ft->training().token_budget()));
    }
    if (!sd->has_temperature()) sd->set_temperature(1.0f);
    if (!sd->has_top_p()) sd->set_top_p(1.0f);
    if (sd->max_new_tokens() == 0) sd->set_max_new_tokens(ft->training().sequence_length());
  }

  v1::Budget* b = spec->mutable_budget();
  if (b->max_wall_time().seconds() == 0 && b->max_wall_time().nanos() == 0) {
    b->mutable_max_wall_time()->set_seconds(24 * 3600);
  }
  if (!b->cpu_only() && b->gpus_per_task() == 0) b->set_gpus_per_task(1);

  FillEvaluationTasks(spec);
  if (spec->output_model_name().empty()) spec->set_output_model_name(absl::StrCat("job-", job_id));
  if (spec->precision() == v1::PRECISION_UNSPECIFIED) {
    spec->set_precision(b->cpu_only() ? v1::PRECISION_FP32 : v1::PRECISION_BF16);
  }
}

}  // namespace linearize::scheduler
