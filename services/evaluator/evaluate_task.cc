#include "services/evaluator/evaluate_task.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/model/load.h"
#include "services/common/log.h"
#include "services/common/paths.h"
#include "services/evaluator/evaluation_engine.h"
#include "services/evaluator/evaluation_report.h"
#include "services/evaluator/task_defaults.h"

namespace linearize::evaluator {
namespace {

using server::LeaseKeeper;

void SetTime(google::protobuf::Timestamp* t, absl::Time when = absl::Now()) {
  const int64_t ns = absl::ToUnixNanos(when);
  t->set_seconds(ns / 1000000000);
  t->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

std::string Failed(LeaseKeeper& keeper, v1::FailureCode code, const std::string& message,
                   bool retryable) {
  server::LogError("task.failed", {{"task_id", keeper.task().task_id()}, {"error", message}});
  keeper.Log(v1::LOG_SEVERITY_ERROR, message);
  absl::StatusOr<v1::FailTaskResponse> r = keeper.Fail(code, message, retryable);
  if (!r.ok()) server::LogWarning("task.fail_refused", {{"status", r.status()}});
  return "failed";
}

}  // namespace

std::string RunEvaluateTask(LeaseKeeper& keeper, const EvaluateTaskContext& ctx) {
  const v1::Task& task = keeper.task();
  server::LogInfo("task.started", {{"task_id", task.task_id()},
                                   {"job_id", task.job_id()},
                                   {"kind", "evaluate"},
                                   {"attempt", task.attempt()}});
  if (task.kind() != v1::STAGE_EVALUATE) {
    return Failed(keeper, v1::FAILURE_CODE_INTERNAL,
                  absl::StrCat("linearize-evaluator runs EVALUATE tasks only, got ",
                               v1::Stage_Name(task.kind())),
                  /*retryable=*/true);
  }
  if (task.input_paths_size() == 0) {
    return Failed(keeper, v1::FAILURE_CODE_INVALID_INPUT,
                  "input_paths: no model to evaluate (the FINETUNE output)", false);
  }
  const std::string model_rel = task.input_paths(task.input_paths_size() - 1);
  std::vector<v1::EvaluationTask> tasks(task.spec().evaluation_tasks().begin(),
                                        task.spec().evaluation_tasks().end());
  // A perplexity task without sources scores the job's validation files.
  for (v1::EvaluationTask& t : tasks) {
    if (t.has_perplexity() && t.perplexity().sources_size() == 0) {
      for (const v1::TextSource& s : task.spec().data().validation()) {
        *t.mutable_perplexity()->add_sources() = s;
      }
    }
  }
  if (absl::Status s = ApplyTaskDefaults(&tasks, /*in_job=*/true); !s.ok()) {
    return Failed(keeper, v1::FAILURE_CODE_INVALID_INPUT,
                  absl::StrCat("spec.evaluation_", s.message()), false);
  }

  v1::EvaluationReport report;
  report.set_report_id(task.evaluation_report_id());
  report.set_tenant(task.tenant());
  report.set_job_id(task.job_id());
  report.mutable_model()->set_artifact_path(model_rel);
  report.mutable_teacher()->set_artifact_path(task.teacher_path());
  SetTime(report.mutable_create_time());
  SetTime(report.mutable_start_time());
  report.set_state(v1::EVALUATION_STATE_RUNNING);

  absl::StatusOr<std::string> model_abs =
      server::ResolveExistingUnderRoot(ctx.artifact_root, model_rel, "input_paths");
  if (!model_abs.ok()) {
    return Failed(keeper, v1::FAILURE_CODE_INVALID_INPUT, std::string(model_abs.status().message()), false);
  }
  absl::StatusOr<std::string> teacher_abs =
      server::ResolveExistingUnderRoot(ctx.artifact_root, task.teacher_path(), "teacher_path");
  if (!teacher_abs.ok()) {
    return Failed(keeper, v1::FAILURE_CODE_INVALID_INPUT, std::string(teacher_abs.status().message()), false);
  }
  keeper.Log(v1::LOG_SEVERITY_INFO, absl::StrCat("evaluating ", model_rel, " against ", task.teacher_path()));
  absl::StatusOr<model::LoadedModel> model = model::LoadModel(*model_abs);
  if (!model.ok()) {
    return Failed(keeper, v1::FAILURE_CODE_INVALID_INPUT,
                  absl::StrCat("loading the model ", model_rel, ": ", model.status().message()), false);
  }
  absl::StatusOr<model::LoadedModel> teacher = model::LoadModel(*teacher_abs);
  if (!teacher.ok()) {
    return Failed(keeper, v1::FAILURE_CODE_INVALID_INPUT,
                  absl::StrCat("loading the teacher ", task.teacher_path(), ": ",
                               teacher.status().message()),
                  false);
  }

  EngineInputs in;
  in.model = &*model;
  in.teacher = &*teacher;
  in.tasks = tasks;
  in.artifact_root = ctx.artifact_root;
  in.default_texts = ctx.default_texts;
  std::vector<int64_t> done(tasks.size(), 0), planned(tasks.size(), 0);
  bool shutdown = false;
  EngineCallbacks cb;
  cb.cancelled = [&] {
    if (ctx.shutting_down && ctx.shutting_down()) shutdown = true;
    return shutdown || keeper.should_stop();
  };
  cb.progress = [&](const v1::EvaluationProgress& p) {
    const size_t i = static_cast<size_t>(p.task_index());
    if (i >= done.size()) return;
    done[i] = p.items_done();
    planned[i] = p.items_total();
    v1::StageProgress s;
    int64_t step = 0, total = 0;
    for (size_t k = 0; k < done.size(); ++k) step += done[k], total += planned[k];
    s.set_step(step);
    s.set_total_steps(std::max(step, total));
    s.set_tokens_per_second(p.tokens_per_second());
    if (p.has_eta()) *s.mutable_eta() = p.eta();
    keeper.SetProgress(s);
  };
  cb.task_done = [&](const v1::EvaluationTaskResult& r) {
    keeper.Log(r.state() == v1::EVALUATION_STATE_FAILED ? v1::LOG_SEVERITY_WARNING
                                                        : v1::LOG_SEVERITY_INFO,
               absl::StrCat("evaluation task ", r.name(), " ",
                            v1::EvaluationState_Name(r.state()).substr(17),
                            r.error().empty() ? "" : ": " + r.error()));
  };
  const std::vector<v1::EvaluationTaskResult> results = RunEvaluationTasks(in, cb);
  if (keeper.should_stop()) {
    keeper.StopHeartbeats();
    return "abandoned";
  }
  if (shutdown) {
    keeper.Flush();
    keeper.StopHeartbeats();
    return "handed_back";
  }
  for (const v1::EvaluationTaskResult& r : results) *report.add_tasks() = r;
  report.set_state(v1::EVALUATION_STATE_SUCCEEDED);
  SetTime(report.mutable_end_time());
  *report.mutable_usage() = keeper.Usage();
  if (absl::Status s = WriteReportFiles(&report, ctx.artifact_root, task.output_path()); !s.ok()) {
    return Failed(keeper, v1::FAILURE_CODE_INTERNAL, absl::StrCat("writing the report: ", s.message()),
                  true);
  }
  v1::TaskOutputs out;
  out.set_output_path(task.output_path());
  out.set_evaluation_report_id(task.evaluation_report_id());
  int64_t items = 0;
  for (int64_t d : done) items += d;
  out.mutable_final_progress()->set_step(items);
  out.mutable_final_progress()->set_total_steps(items);
  for (const v1::EvaluationTaskResult& r : results) {
    for (const auto& [k, v] : r.metrics()) (*out.mutable_metrics())[absl::StrCat(r.name(), ".", k)] = v;
  }
  absl::Status s = keeper.Complete(out);
  if (!s.ok()) {
    server::LogWarning("task.complete_refused", {{"task_id", task.task_id()}, {"status", s}});
    return keeper.should_stop() || absl::IsFailedPrecondition(s) ? "abandoned" : "failed";
  }
  // Committed: file the report where GetReport finds it.
  v1::EvaluationReport filed = report;
  if (absl::Status w = WriteReportFiles(&filed, ctx.artifact_root, ReportDir(report.report_id()));
      !w.ok()) {
    server::LogWarning("evaluation.report_not_filed", {{"report_id", report.report_id()}, {"status", w}});
  }
  if (ctx.service != nullptr) ctx.service->AddFinishedReport(report);
  server::LogInfo("task.completed", {{"task_id", task.task_id()},
                                     {"report_id", report.report_id()},
                                     {"output_path", task.output_path()}});
  return "completed";
}

}  // namespace linearize::evaluator
