#include "services/evaluator/evaluation_engine.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/eval/layer_errors.h"
#include "common/eval/multiple_choice.h"
#include "common/eval/recall.h"
#include "nlohmann/json.hpp"
#include "services/common/paths.h"

namespace linearize::evaluator {
namespace {

using Clock = std::chrono::steady_clock;

void SetSeconds(double seconds, google::protobuf::Duration* d) {
  const int64_t ns = static_cast<int64_t>(std::max(0.0, seconds) * 1e9);
  d->set_seconds(ns / 1000000000);
  d->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

int64_t Context(const model::LoadedModel& m) { return m.config.max_position_embeddings; }

// Reports progress of one task.
class Progress {
 public:
  Progress(const EngineCallbacks& cb, const v1::EvaluationTaskResult& r, int index, int64_t total)
      : cb_(cb), name_(r.name()), index_(index), total_(total), start_(Clock::now()) {}
  void Item(int64_t done, int64_t tokens, const std::map<std::string, double>& partial) {
    if (!cb_.progress) return;
    tokens_ += tokens;
    const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    v1::EvaluationProgress p;
    p.set_task_name(name_);
    p.set_task_index(index_);
    p.set_items_done(done);
    p.set_items_total(total_);
    if (secs > 0) p.set_tokens_per_second(static_cast<double>(tokens_) / secs);
    SetSeconds(secs, p.mutable_elapsed());
    if (done > 0 && total_ >= done) {
      SetSeconds(secs / static_cast<double>(done) * static_cast<double>(total_ - done),
                 p.mutable_eta());
    }
    for (const auto& [k, v] : partial) (*p.mutable_partial_metrics())[k] = v;
    cb_.progress(p);
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  const EngineCallbacks& cb_;
  std::string name_;
  int index_;
  int64_t total_;
  int64_t tokens_ = 0;
  Clock::time_point start_;
};

bool Cancelled(const EngineCallbacks& cb) { return cb.cancelled && cb.cancelled(); }

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The documents of a TextSource (plain text: the file is one document;
// JSONL: the "text" field of each line, or the field named in `fields`).
absl::StatusOr<std::vector<std::string>> SourceDocuments(const v1::TextSource& source,
                                                         const std::string& root,
                                                         const std::string& field) {
  absl::StatusOr<std::string> path =
      server::ResolveExistingUnderRoot(root, source.path(), field + ".path");
  if (!path.ok()) return path.status();
  absl::StatusOr<std::string> text = ReadText(*path);
  if (!text.ok()) return text.status();
  const bool jsonl = source.format() == v1::DATA_FORMAT_JSONL ||
                     (source.format() == v1::DATA_FORMAT_UNSPECIFIED &&
                      (absl::EndsWith(*path, ".jsonl") || absl::EndsWith(*path, ".json")));
  std::vector<std::string> docs;
  if (!jsonl) {
    docs.push_back(*std::move(text));
  } else {
    const std::string key = source.fields().text().empty() ? "text" : source.fields().text();
    std::istringstream lines(*text);
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object() || !j.contains(key) || !j[key].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".path: ", source.path(), ":", n, ": expected an object with a string \"",
            key, "\""));
      }
      docs.push_back(j[key].get<std::string>());
    }
  }
  if (source.max_documents() > 0 && static_cast<int64_t>(docs.size()) > source.max_documents()) {
    docs.resize(static_cast<size_t>(source.max_documents()));
  }
  return docs;
}

// The token stream a perplexity task scores.
absl::StatusOr<std::vector<int32_t>> PerplexityTokens(const v1::PerplexityTask& task,
                                                      const EngineInputs& in,
                                                      const tokenizer::Tokenizer& tok) {
  std::vector<int32_t> ids;
  auto add = [&](const std::string& text) {
    const std::vector<int32_t> t = tok.Encode(text, /*add_special_tokens=*/true);
    ids.insert(ids.end(), t.begin(), t.end());
  };
  if (task.sources_size() == 0) {
    if (in.default_texts.empty()) {
      return absl::FailedPreconditionError(
          "perplexity.sources: none given, and the evaluator has no default text (--eval-text)");
    }
    for (const std::string& path : in.default_texts) {
      absl::StatusOr<std::string> text = ReadText(path);
      if (!text.ok()) return text.status();
      add(*text);
    }
  }
  for (int i = 0; i < task.sources_size(); ++i) {
    absl::StatusOr<std::vector<std::string>> docs =
        SourceDocuments(task.sources(i), in.artifact_root, absl::StrCat("perplexity.sources[", i, "]"));
    if (!docs.ok()) return docs.status();
    for (const std::string& d : *docs) add(d);
  }
  if (ids.size() < 2) return absl::InvalidArgumentError("perplexity: the text has fewer than 2 tokens");
  return ids;
}

struct Window {
  int64_t begin, end;         // tokens [begin, end) go through the model
  int64_t first_target;       // targets [first_target, end) are scored
};

// Windows of `length` tokens starting every `stride` tokens; each scores
// the targets no earlier window scored, at most `max_targets` in all.
std::vector<Window> PlanWindows(int64_t n, int64_t length, int64_t stride, int64_t max_targets) {
  std::vector<Window> windows;
  int64_t scored_until = 0;  // targets [1, scored_until] are done
  int64_t targets = 0;
  for (int64_t begin = 0; begin < n - 1 && targets < max_targets; begin += stride) {
    const int64_t end = std::min(begin + length, n);
    const int64_t first = std::max(scored_until + 1, begin + 1);
    if (first >= end) continue;
    const int64_t take = std::min(end - first, max_targets - targets);
    windows.push_back({begin, first + take, first});
    targets += take;
    scored_until = first + take - 1;
    if (end == n) break;
  }
  return windows;
}

int64_t WindowLength(const v1::PerplexityTask& t, const EngineInputs& in) {
  int64_t length = t.sequence_length() > 0 ? t.sequence_length() : 1024;
  length = std::min(length, Context(*in.model));
  if (in.teacher != nullptr) length = std::min(length, Context(*in.teacher));
  return std::max<int64_t>(2, length);
}

absl::Status RunPerplexity(const v1::PerplexityTask& task, const EngineInputs& in,
                           const EngineCallbacks& cb, Progress& progress,
                           v1::EvaluationTaskResult* result) {
  const tokenizer::Tokenizer* tok = in.model->tokenizer ? in.model->tokenizer.get()
                                    : in.teacher ? in.teacher->tokenizer.get()
                                                 : nullptr;
  if (tok == nullptr) return absl::FailedPreconditionError("the model has no tokenizer");
  absl::StatusOr<std::vector<int32_t>> ids = PerplexityTokens(task, in, *tok);
  if (!ids.ok()) return ids.status();
  const int64_t length = WindowLength(task, in);
  const int64_t stride = std::clamp<int64_t>(task.stride() > 0 ? task.stride() : length, 1, length);
  const int64_t max_targets = task.max_tokens() > 0 ? task.max_tokens() : 1000000;
  const std::vector<Window> windows =
      PlanWindows(static_cast<int64_t>(ids->size()), length, stride, max_targets);
  // Record what ran.
  v1::PerplexityTask* as_run = result->mutable_task()->mutable_perplexity();
  as_run->set_sequence_length(static_cast<int32_t>(length));
  as_run->set_stride(static_cast<int32_t>(stride));
  as_run->set_max_tokens(max_targets);

  at::NoGradGuard no_grad;
  double nll = 0, teacher_nll = 0, kl = 0;
  int64_t scored = 0, agree = 0;
  const at::Tensor all = at::tensor(*ids, at::dtype(at::kInt)).to(at::kLong);
  for (size_t w = 0; w < windows.size(); ++w) {
    if (Cancelled(cb)) return absl::CancelledError("cancelled");
    const Window& win = windows[w];
    const at::Tensor x = all.slice(0, win.begin, win.end).unsqueeze(0);
    // Logits at position p predict token p + 1.
    const int64_t from = win.first_target - 1 - win.begin, count = win.end - win.first_target;
    const at::Tensor targets = all.slice(0, win.first_target, win.end);
    absl::StatusOr<at::Tensor> logits = in.model->model->Forward(x.to(in.model->model->device()));
    if (!logits.ok()) return logits.status();
    const at::Tensor lp =
        at::log_softmax(logits->squeeze(0).slice(0, from, from + count).to(at::kFloat).cpu(), -1);
    nll -= lp.gather(1, targets.unsqueeze(1)).sum().item<double>();
    if (in.teacher != nullptr) {
      absl::StatusOr<at::Tensor> tl = in.teacher->model->Forward(x.to(in.teacher->model->device()));
      if (!tl.ok()) return tl.status();
      const at::Tensor tlp =
          at::log_softmax(tl->squeeze(0).slice(0, from, from + count).to(at::kFloat).cpu(), -1);
      if (tlp.size(1) != lp.size(1)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model and teacher vocabularies differ (", lp.size(1), " vs ", tlp.size(1), ")"));
      }
      teacher_nll -= tlp.gather(1, targets.unsqueeze(1)).sum().item<double>();
      kl += (tlp.exp() * (tlp - lp)).sum().item<double>();
      agree += lp.argmax(1).eq(tlp.argmax(1)).sum().item<int64_t>();
    }
    scored += count;
    std::map<std::string, double> partial = {{"perplexity", std::exp(nll / scored)}};
    if (in.teacher != nullptr) partial["teacher_perplexity"] = std::exp(teacher_nll / scored);
    progress.Item(static_cast<int64_t>(w) + 1, win.end - win.begin, partial);
  }
  if (scored == 0) return absl::InvalidArgumentError("perplexity: nothing to score");
  v1::PerplexityResult* r = result->mutable_perplexity();
  r->mutable_model()->set_nll_per_token(nll / scored);
  r->mutable_model()->set_perplexity(std::exp(nll / scored));
  r->mutable_model()->set_tokens_scored(scored);
  auto& m = *result->mutable_metrics();
  m["perplexity"] = r->model().perplexity();
  m["nll_per_token"] = r->model().nll_per_token();
  if (in.teacher != nullptr) {
    r->mutable_teacher()->set_nll_per_token(teacher_nll / scored);
    r->mutable_teacher()->set_perplexity(std::exp(teacher_nll / scored));
    r->mutable_teacher()->set_tokens_scored(scored);
    r->set_kl_to_teacher(kl / scored);
    r->set_top1_agreement(static_cast<double>(agree) / static_cast<double>(scored));
    m["teacher_perplexity"] = r->teacher().perplexity();
    m["perplexity_ratio"] = r->model().perplexity() / r->teacher().perplexity();
    m["kl_to_teacher"] = r->kl_to_teacher();
    m["top1_agreement"] = r->top1_agreement();
    // Each converted layer's attention on the teacher's inputs, over the
    // first windows (a few thousand tokens say where along the depth the
    // conversion is poor; the whole text would double the task's time).
    const size_t probe = std::min(ids->size(), static_cast<size_t>(4 * length));
    absl::StatusOr<std::vector<eval::LayerError>> layers = eval::CompareAttentionLayers(
        *in.teacher->model, *in.model->model, std::span<const int32_t>(ids->data(), probe), length);
    if (!layers.ok()) return layers.status();
    for (const eval::LayerError& e : *layers) {
      m[absl::StrCat("attention_error@layer", e.layer)] = e.relative;
    }
  }
  return absl::OkStatus();
}

// Accuracy of one model at one length; nullopt when the prompt does not fit.
absl::StatusOr<std::optional<double>> RecallAccuracy(const v1::RecallTask& task,
                                                     const model::LoadedModel& m, int64_t length) {
  if (task.kind() == v1::RecallTask::KIND_MULTI_QUERY) {
    if (length > Context(m)) return std::optional<double>();
    eval::MqarOptions o;
    o.context_length = length;
    o.num_pairs = task.num_pairs() > 0 ? task.num_pairs() : 16;
    o.num_samples = task.num_samples() > 0 ? task.num_samples() : 50;
    o.seed = task.seed();
    o.pool = eval::MqarTokenPool(*m.model, m.tokenizer.get());
    if (m.tokenizer) {
      o.bos = m.tokenizer->bos_id();
      eval::SetMqarSeparators(*m.tokenizer, &o);
    }
    absl::StatusOr<eval::RecallResult> r = eval::EvaluateMqar(*m.model, o);
    if (!r.ok()) return r.status();
    return std::optional<double>(r->accuracy);
  }
  if (m.tokenizer == nullptr) return absl::FailedPreconditionError("passkey: the model has no tokenizer");
  if (length + 32 > Context(m)) return std::optional<double>();
  eval::PasskeyOptions o;
  o.length = length;
  o.num_samples = task.num_samples() > 0 ? task.num_samples() : 50;
  o.seed = task.seed();
  absl::StatusOr<eval::RecallResult> r = eval::EvaluatePasskey(*m.model, *m.tokenizer, o);
  if (!r.ok()) return r.status();
  return std::optional<double>(r->accuracy);
}

absl::Status RunRecall(const v1::RecallTask& task, const EngineInputs& in,
                       const EngineCallbacks& cb, Progress& progress,
                       v1::EvaluationTaskResult* result) {
  std::vector<int32_t> lengths(task.context_lengths().begin(), task.context_lengths().end());
  std::sort(lengths.begin(), lengths.end());
  v1::RecallResult* r = result->mutable_recall();
  std::vector<std::string> skipped;
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (Cancelled(cb)) return absl::CancelledError("cancelled");
    const int64_t len = lengths[i];
    absl::StatusOr<std::optional<double>> acc = RecallAccuracy(task, *in.model, len);
    if (!acc.ok()) return acc.status();
    if (!acc->has_value()) {
      skipped.push_back(absl::StrCat(len));
    } else {
      v1::RecallPoint* p = r->add_points();
      p->set_context_length(static_cast<int32_t>(len));
      p->set_num_samples(task.num_samples() > 0 ? task.num_samples() : 50);
      p->set_accuracy(**acc);
      (*result->mutable_metrics())[absl::StrCat("accuracy@", len)] = **acc;
      if (in.teacher != nullptr) {
        absl::StatusOr<std::optional<double>> t = RecallAccuracy(task, *in.teacher, len);
        if (!t.ok()) return t.status();
        if (t->has_value()) {
          p->set_teacher_accuracy(**t);
          (*result->mutable_metrics())[absl::StrCat("teacher_accuracy@", len)] = **t;
        }
      }
    }
    progress.Item(static_cast<int64_t>(i) + 1, len, {});
  }
  if (r->points_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recall.context_lengths: none fits the model's context of ", Context(*in.model),
        " tokens"));
  }
  return absl::OkStatus();
}

absl::Status RunMultipleChoice(const v1::MultipleChoiceTask& task, const EngineInputs& in,
                               const EngineCallbacks& cb, Progress& progress,
                               v1::EvaluationTaskResult* result) {
  if (task.question_field() != "question" && !task.question_field().empty()) {
    return absl::InvalidArgumentError("multiple_choice.question_field: only \"question\" is supported");
  }
  if (task.choices_field() != "choices" && !task.choices_field().empty()) {
    return absl::InvalidArgumentError("multiple_choice.choices_field: only \"choices\" is supported");
  }
  if (task.answer_field() != "answer" && !task.answer_field().empty()) {
    return absl::InvalidArgumentError("multiple_choice.answer_field: only \"answer\" is supported");
  }
  if (!task.shots_path().empty()) {
    return absl::InvalidArgumentError(
        "multiple_choice.shots_path: shots are drawn from the task's own items only");
  }
  const tokenizer::Tokenizer* tok = in.model->tokenizer.get();
  if (tok == nullptr) return absl::FailedPreconditionError("the model has no tokenizer");
  int64_t items = 0, correct = 0, correct_norm = 0, t_correct = 0, t_correct_norm = 0, agree = 0;
  for (int i = 0; i < task.paths_size(); ++i) {
    if (Cancelled(cb)) return absl::CancelledError("cancelled");
    absl::StatusOr<std::string> path = server::ResolveExistingUnderRoot(
        in.artifact_root, task.paths(i), absl::StrCat("multiple_choice.paths[", i, "]"));
    if (!path.ok()) return path.status();
    absl::StatusOr<eval::McTask> mc = eval::LoadMcTask(*path);
    if (!mc.ok()) return mc.status();
    eval::McOptions o;
    o.num_fewshot = task.num_shots();
    o.limit = task.limit();
    o.seed = task.seed();
    absl::StatusOr<eval::McResult> r = eval::EvaluateMc(*in.model->model, *tok, *mc, o);
    if (!r.ok()) return r.status();
    items += r->questions;
    correct += std::llround(r->acc * static_cast<double>(r->questions));
    correct_norm += std::llround(r->acc_norm * static_cast<double>(r->questions));
    if (in.teacher != nullptr) {
      absl::StatusOr<eval::McResult> t = eval::EvaluateMc(*in.teacher->model, *tok, *mc, o);
      if (!t.ok()) return t.status();
      t_correct += std::llround(t->acc * static_cast<double>(t->questions));
      t_correct_norm += std::llround(t->acc_norm * static_cast<double>(t->questions));
      for (size_t q = 0; q < r->scores.size() && q < t->scores.size(); ++q) {
        agree += r->scores[q].pred == t->scores[q].pred;
      }
    }
    progress.Item(i + 1, 0, {});
  }
  if (items == 0) return absl::InvalidArgumentError("multiple_choice.paths: no items");
  v1::MultipleChoiceResult* r = result->mutable_multiple_choice();
  const double n = static_cast<double>(items);
  r->set_num_items(static_cast<int32_t>(items));
  r->set_num_shots(task.num_shots());
  r->mutable_model()->set_accuracy(static_cast<double>(correct) / n);
  r->mutable_model()->set_accuracy_norm(static_cast<double>(correct_norm) / n);
  auto& m = *result->mutable_metrics();
  m["accuracy"] = r->model().accuracy();
  m["accuracy_norm"] = r->model().accuracy_norm();
  if (in.teacher != nullptr) {
    r->mutable_teacher()->set_accuracy(static_cast<double>(t_correct) / n);
    r->mutable_teacher()->set_accuracy_norm(static_cast<double>(t_correct_norm) / n);
    r->set_agreement(static_cast<double>(agree) / n);
    m["teacher_accuracy"] = r->teacher().accuracy();
    m["teacher_accuracy_norm"] = r->teacher().accuracy_norm();
    m["agreement"] = r->agreement();
  }
  return absl::OkStatus();
}

}  // namespace

int64_t PlannedItems(const v1::EvaluationTask& task) {
  if (task.has_recall()) return task.recall().context_lengths_size();
  if (task.has_multiple_choice()) return task.multiple_choice().paths_size();
  return 0;  // perplexity: known once the text is tokenized
}

std::vector<v1::EvaluationTaskResult> RunEvaluationTasks(const EngineInputs& in,
                                                         const EngineCallbacks& cb) {
  std::vector<v1::EvaluationTaskResult> results;
  for (size_t i = 0; i < in.tasks.size(); ++i) {
    const v1::EvaluationTask& task = in.tasks[i];
    v1::EvaluationTaskResult r;
    r.set_name(task.name());
    *r.mutable_task() = task;
    if (Cancelled(cb)) {
      r.set_state(v1::EVALUATION_STATE_CANCELLED);
      results.push_back(r);
      if (cb.task_done) cb.task_done(r);
      continue;
    }
    int64_t total = PlannedItems(task);
    if (task.has_perplexity() && in.model->tokenizer) {
      // Windows are known before scoring; count them for progress.
      absl::StatusOr<std::vector<int32_t>> ids =
          PerplexityTokens(task.perplexity(), in, *in.model->tokenizer);
      if (ids.ok()) {
        const int64_t length = WindowLength(task.perplexity(), in);
        const int64_t stride = std::clamp<int64_t>(
            task.perplexity().stride() > 0 ? task.perplexity().stride() : length, 1, length);
        total = static_cast<int64_t>(
            PlanWindows(static_cast<int64_t>(ids->size()), length, stride,
                        task.perplexity().max_tokens() > 0 ? task.perplexity().max_tokens() : 1000000)
                .size());
      }
    }
    Progress progress(cb, r, static_cast<int>(i), total);
    absl::Status s;
    try {
      if (task.has_perplexity()) {
        s = RunPerplexity(task.perplexity(), in, cb, progress, &r);
      } else if (task.has_recall()) {
        s = RunRecall(task.recall(), in, cb, progress, &r);
      } else if (task.has_multiple_choice()) {
        s = RunMultipleChoice(task.multiple_choice(), in, cb, progress, &r);
      } else {
        s = absl::InvalidArgumentError("task: no kind set");
      }
    } catch (const std::exception& e) {
      s = absl::InternalError(absl::StrCat("evaluation failed: ", e.what()));
    }
    SetSeconds(progress.seconds(), r.mutable_elapsed());
    if (s.ok()) {
      r.set_state(v1::EVALUATION_STATE_SUCCEEDED);
    } else if (absl::IsCancelled(s)) {
      r.set_state(v1::EVALUATION_STATE_CANCELLED);
      r.clear_result();
    } else {
      r.set_state(v1::EVALUATION_STATE_FAILED);
      r.set_error(std::string(s.message()));
      r.clear_result();
      r.clear_metrics();
    }
    results.push_back(r);
    if (cb.task_done) cb.task_done(r);
  }
  return results;
}

}  // namespace linearize::evaluator
