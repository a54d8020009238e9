#include "services/evaluator/task_defaults.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace linearize::evaluator {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

absl::Status Range(const std::string& field, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": must be in [", lo, ", ", hi, "], got ", value));
}

}  // namespace

absl::Status ApplyTaskDefaults(std::vector<v1::EvaluationTask>* tasks, bool in_job) {
  if (tasks->empty()) return absl::InvalidArgumentError("tasks: at least one task is required");
  if (tasks->size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat("tasks: at most 64, got ", tasks->size()));
  }
  std::map<std::string, int> uses;
  for (size_t i = 0; i < tasks->size(); ++i) {
    const v1::EvaluationTask& t = (*tasks)[i];
    const std::string f = absl::StrCat("tasks[", i, "]");
    if (t.task_case() == v1::EvaluationTask::TASK_NOT_SET) {
      return absl::InvalidArgumentError(
          absl::StrCat(f, ": set exactly one of perplexity, recall, multiple_choice"));
    }
    if (!t.name().empty()) {
      if (!ValidName(t.name())) {
        return absl::InvalidArgumentError(absl::StrCat(
            f, ".name: 1 to 64 characters from [a-z0-9_-], got \"", t.name(), "\""));
      }
      if (++uses[t.name()] > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(f, ".name: \"", t.name(), "\" is used by another task"));
      }
    }
  }
  for (size_t i = 0; i < tasks->size(); ++i) {
    v1::EvaluationTask& t = (*tasks)[i];
    const std::string f = absl::StrCat("tasks[", i, "]");
    const char* base = t.has_perplexity() ? "perplexity" : t.has_recall() ? "recall"
                                                                           : "multiple_choice";
    if (t.name().empty()) {
      for (int n = 1;; ++n) {
        std::string name = n == 1 ? std::string(base) : absl::StrCat(base, "_", n);
        if (uses[name] == 0) {
          ++uses[name];
          t.set_name(name);
          break;
        }
      }
    }
    absl::Status s;
    if (t.has_perplexity()) {
      v1::PerplexityTask* p = t.mutable_perplexity();
      if (p->sources_size() == 0 && !in_job) {
        return absl::InvalidArgumentError(absl::StrCat(f, ".perplexity.sources: required"));
      }
      for (int k = 0; k < p->sources_size(); ++k) {
        if (p->sources(k).path().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(f, ".perplexity.sources[", k, "].path: required"));
        }
      }
      if (p->sequence_length() == 0) p->set_sequence_length(1024);
      if (s = Range(f + ".perplexity.sequence_length", p->sequence_length(), 16, 1048576); !s.ok()) {
        return s;
      }
      if (p->stride() == 0) p->set_stride(p->sequence_length());
      if (s = Range(f + ".perplexity.stride", p->stride(), 1, p->sequence_length()); !s.ok()) {
        return s;
      }
      if (p->max_tokens() == 0) p->set_max_tokens(1000000);
      if (s = Range(f + ".perplexity.max_tokens", p->max_tokens(), 1, 1000000000); !s.ok()) {
        return s;
      }
    } else if (t.has_recall()) {
      v1::RecallTask* r = t.mutable_recall();
      if (r->kind() == v1::RecallTask::KIND_UNSPECIFIED) r->set_kind(v1::RecallTask::KIND_PASSKEY);
      if (!v1::RecallTask::Kind_IsValid(r->kind())) {
        return absl::InvalidArgumentError(absl::StrCat(f, ".recall.kind: unknown kind ", r->kind()));
      }
      if (r->context_lengths().empty()) {
        for (int len : {512, 1024, 2048, 4096}) r->add_context_lengths(len);
      }
      for (int k = 0; k < r->context_lengths_size(); ++k) {
        if (s = Range(absl::StrCat(f, ".recall.context_lengths[", k, "]"), r->context_lengths(k), 64,
                      1048576);
            !s.ok()) {
          return s;
        }
      }
      if (r->num_samples() == 0) r->set_num_samples(50);
      if (s = Range(f + ".recall.num_samples", r->num_samples(), 1, 10000); !s.ok()) return s;
      if (r->num_pairs() == 0) r->set_num_pairs(16);
      if (s = Range(f + ".recall.num_pairs", r->num_pairs(), 1, 1024); !s.ok()) return s;
    } else {
      v1::MultipleChoiceTask* m = t.mutable_multiple_choice();
      if (m->paths().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(f, ".multiple_choice.paths: required"));
      }
      if (m->question_field().empty()) m->set_question_field("question");
      if (m->choices_field().empty()) m->set_choices_field("choices");
      if (m->answer_field().empty()) m->set_answer_field("answer");
      if (s = Range(f + ".multiple_choice.num_shots", m->num_shots(), 0, 25); !s.ok()) return s;
      if (s = Range(f + ".multiple_choice.limit", m->limit(), 0, 1 << 30); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace linearize::evaluator
