#include "services/evaluator/evaluation_service.h"

#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/model/load.h"
#include "services/common/auth.h"
#include "services/common/log.h"
#include "services/common/paths.h"
#include "services/common/status.h"
#include "services/evaluator/evaluation_engine.h"
#include "services/evaluator/evaluation_report.h"
#include "services/evaluator/task_defaults.h"

namespace linearize::evaluator {
namespace {

using server::ToGrpcStatus;

void SetTime(google::protobuf::Timestamp* t, absl::Time when = absl::Now()) {
  const int64_t ns = absl::ToUnixNanos(when);
  t->set_seconds(ns / 1000000000);
  t->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

std::string NewReportId() {
  std::random_device rd;
  return absl::StrCat("report-", absl::Hex(static_cast<uint64_t>(rd()) << 32 | rd(), absl::kZeroPad16));
}

absl::Status CheckRequestId(const std::string& id) {
  if (id.empty()) return absl::OkStatus();
  if (id.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat("request_id: at most 128 characters, got ", id.size()));
  }
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '~' || c == ':' || c == '-';
    if (!ok) return absl::InvalidArgumentError("request_id: only [A-Za-z0-9._~:-] are allowed");
  }
  return absl::OkStatus();
}

bool Ended(v1::EvaluationState s) {
  return s == v1::EVALUATION_STATE_SUCCEEDED || s == v1::EVALUATION_STATE_FAILED ||
         s == v1::EVALUATION_STATE_CANCELLED;
}

std::string StateLabel(v1::EvaluationState s) {
  switch (s) {
    case v1::EVALUATION_STATE_SUCCEEDED: return "succeeded";
    case v1::EVALUATION_STATE_FAILED: return "failed";
    case v1::EVALUATION_STATE_CANCELLED: return "cancelled";
    default: return "other";
  }
}

}  // namespace

std::string ReportDir(const std::string& report_id) { return "evaluations/" + report_id; }

struct EvaluationServiceImpl::Evaluation {
  v1::EvaluationReport report;
  std::string request;  // serialized, for request_id repeats
  std::string model_path, teacher_path;  // relative to the root
  std::vector<v1::EvaluationTask> tasks;
  std::vector<v1::EvaluationEvent> events;  // every event after `started`
  std::map<int, size_t> last_progress;      // task index -> its latest event in `events`
  std::map<int, absl::Time> progress_time;  // task index -> when it was last sent
  bool cancel = false;
  bool done = false;  // the final `report` event was pushed
};

EvaluationServiceImpl::EvaluationServiceImpl(ServiceOptions options)
    : options_(std::move(options)) {
  if (options_.registry != nullptr) {
    ended_ = &metrics::BuildCounter()
                  .Name("linearize_evaluations_total")
                  .Help("Evaluations ended, by final state")
                  .Register(*options_.registry);
    active_ = &metrics::BuildGauge()
                   .Name("linearize_evaluations_active")
                   .Help("Evaluations queued or running")
                   .Register(*options_.registry)
                   .Add({});
  }
  runner_ = std::thread([this] { RunLoop(); });
}

EvaluationServiceImpl::~EvaluationServiceImpl() {
  Drain();
  if (runner_.joinable()) runner_.join();
}

void EvaluationServiceImpl::PushLocked(Evaluation& e, v1::EvaluationEvent event) {
  SetTime(event.mutable_time());
  e.events.push_back(std::move(event));
  cv_.notify_all();
}

void EvaluationServiceImpl::FinishLocked(Evaluation& e, v1::EvaluationState state,
                                         const std::string& error) {
  if (e.done) return;
  e.report.set_state(state);
  e.report.set_error(error);
  for (v1::EvaluationTaskResult& t : *e.report.mutable_tasks()) {
    if (!Ended(t.state())) t.set_state(v1::EVALUATION_STATE_CANCELLED);
  }
  SetTime(e.report.mutable_end_time());
  if (absl::Status s = WriteReportFiles(&e.report, options_.artifact_root, ReportDir(e.report.report_id()));
      !s.ok()) {
    server::LogWarning("evaluation.report_not_written",
                       {{"report_id", e.report.report_id()}, {"status", s}});
    e.report.clear_markdown_path();
    e.report.clear_json_path();
  }
  v1::EvaluationEvent event;
  *event.mutable_report() = e.report;
  PushLocked(e, std::move(event));
  e.done = true;
  if (ended_ != nullptr) ended_->Add({{"state", StateLabel(state)}}).Increment();
  if (active_ != nullptr) active_->Decrement();
  server::LogInfo("evaluation.ended", {{"report_id", e.report.report_id()},
                                       {"state", StateLabel(state)},
                                       {"error", error}});
}

std::shared_ptr<EvaluationServiceImpl::Evaluation> EvaluationServiceImpl::FindLocked(
    const std::string& tenant, const std::string& id) {
  auto it = evaluations_.find(id);
  if (it == evaluations_.end() || it->second->report.tenant() != tenant) return nullptr;
  return it->second;
}

grpc::Status EvaluationServiceImpl::Evaluate(grpc::ServerContext* context,
                                             const v1::EvaluateRequest* request,
                                             grpc::ServerWriter<v1::EvaluationEvent>* writer) {
  absl::StatusOr<server::Principal> who = server::PrincipalOf(context);
  if (!who.ok()) return ToGrpcStatus(who.status());
  const std::string& tenant = who->tenant;
  if (absl::Status s = CheckRequestId(request->request_id()); !s.ok()) return ToGrpcStatus(s);
  const std::string serialized = request->SerializeAsString();

  std::shared_ptr<Evaluation> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the evaluator is shutting down");
    if (!request->request_id().empty()) {
      auto it = request_ids_.find({tenant, request->request_id()});
      if (it != request_ids_.end()) {
        e = FindLocked(tenant, it->second);
        if (e != nullptr && e->request != serialized) {
          return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                              absl::StrCat("request_id: \"", request->request_id(),
                                           "\" was used for a different evaluation (",
                                           it->second, ")"));
        }
      }
    }
  }
  if (e == nullptr) {
    // Validate and resolve everything before `started`.
    std::vector<v1::EvaluationTask> tasks(request->tasks().begin(), request->tasks().end());
    if (absl::Status s = ApplyTaskDefaults(&tasks, /*in_job=*/false); !s.ok()) return ToGrpcStatus(s);
    if (request->batch_size() < 0 || request->batch_size() > 1024) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("batch_size: must be in [0, 1024], got ", request->batch_size()));
    }
    if (!v1::Precision_IsValid(request->precision())) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "precision: unknown value");
    }
    if (!request->has_model()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "model: required");
    absl::StatusOr<std::string> model = options_.resolver->Resolve(request->model(), "model", context);
    if (!model.ok()) return ToGrpcStatus(model.status());
    std::string teacher;
    if (request->has_teacher()) {
      absl::StatusOr<std::string> t = options_.resolver->Resolve(request->teacher(), "teacher", context);
      if (!t.ok()) return ToGrpcStatus(t.status());
      teacher = *t;
      absl::StatusOr<int64_t> mv = CheckpointVocabSize(options_.artifact_root + "/" + *model);
      absl::StatusOr<int64_t> tv = CheckpointVocabSize(options_.artifact_root + "/" + teacher);
      if (!mv.ok()) return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat("model: ", mv.status().message())));
      if (!tv.ok()) return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat("teacher: ", tv.status().message())));
      if (*mv != *tv) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("teacher: its vocabulary (", *tv,
                                         " tokens) differs from the model's (", *mv,
                                         "), so scores are not comparable"));
      }
    }
    // Files the tasks read must exist.
    for (size_t i = 0; i < tasks.size(); ++i) {
      for (int k = 0; k < tasks[i].perplexity().sources_size(); ++k) {
        absl::StatusOr<std::string> p = server::ResolveExistingUnderRoot(
            options_.artifact_root, tasks[i].perplexity().sources(k).path(),
            absl::StrCat("tasks[", i, "].perplexity.sources[", k, "].path"));
        if (!p.ok()) return ToGrpcStatus(p.status());
      }
      for (int k = 0; k < tasks[i].multiple_choice().paths_size(); ++k) {
        absl::StatusOr<std::string> p = server::ResolveExistingUnderRoot(
            options_.artifact_root, tasks[i].multiple_choice().paths(k),
            absl::StrCat("tasks[", i, "].multiple_choice.paths[", k, "]"));
        if (!p.ok()) return ToGrpcStatus(p.status());
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the evaluator is shutting down");
    if (!request->request_id().empty()) {
      // A concurrent repeat may have created it meanwhile.
      auto it = request_ids_.find({tenant, request->request_id()});
      if (it != request_ids_.end()) e = FindLocked(tenant, it->second);
    }
    if (e == nullptr) {
      int active = 0;
      for (const auto& [id, other] : evaluations_) {
        active += other->report.tenant() == tenant && !other->done;
      }
      if (active >= options_.max_active_per_tenant) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("tenant ", tenant, " already has ", active,
                                         " evaluations queued or running (at most ",
                                         options_.max_active_per_tenant, ")"));
      }
      e = std::make_shared<Evaluation>();
      e->request = serialized;
      e->model_path = *model;
      e->teacher_path = teacher;
      e->tasks = tasks;
      v1::EvaluationReport& r = e->report;
      r.set_report_id(NewReportId());
      r.set_tenant(tenant);
      r.mutable_model()->set_artifact_path(*model);
      if (!teacher.empty()) r.mutable_teacher()->set_artifact_path(teacher);
      r.set_state(v1::EVALUATION_STATE_QUEUED);
      SetTime(r.mutable_create_time());
      for (const v1::EvaluationTask& t : tasks) {
        v1::EvaluationTaskResult* tr = r.add_tasks();
        tr->set_name(t.name());
        *tr->mutable_task() = t;
        tr->set_state(v1::EVALUATION_STATE_QUEUED);
      }
      evaluations_[r.report_id()] = e;
      if (!request->request_id().empty()) request_ids_[{tenant, request->request_id()}] = r.report_id();
      queue_.push_back(e);
      if (active_ != nullptr) active_->Increment();
      cv_.notify_all();
      server::LogInfo("evaluation.queued", {{"report_id", r.report_id()},
                                            {"tenant", tenant},
                                            {"model", *model},
                                            {"tasks", static_cast<int64_t>(tasks.size())}});
    }
  }

  // Stream: `started`, then (re-attaching) the latest progress, then what comes.
  size_t next = 0;
  std::vector<v1::EvaluationEvent> first(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    SetTime(first[0].mutable_time());
    first[0].mutable_started()->set_report_id(e->report.report_id());
    for (const v1::EvaluationTask& t : e->tasks) first[0].mutable_started()->add_task_names(t.name());
    if (e->done) {
      next = e->events.size() - 1;  // just the final report
    } else if (!e->events.empty()) {
      for (const auto& [task, index] : e->last_progress) first.push_back(e->events[index]);
      next = e->events.size();
    }
  }
  for (const v1::EvaluationEvent& ev : first) {
    if (!writer->Write(ev)) return grpc::Status::OK;  // the client left; the evaluation goes on
  }
  for (;;) {
    std::vector<v1::EvaluationEvent> batch;
    bool finished = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(250),
                   [&] { return next < e->events.size(); });
      while (next < e->events.size()) {
        batch.push_back(e->events[next++]);
      }
      finished = e->done && next >= e->events.size();
    }
    for (const v1::EvaluationEvent& ev : batch) {
      if (!writer->Write(ev)) return grpc::Status::OK;
    }
    if (finished) return grpc::Status::OK;
    if (context->IsCancelled()) return grpc::Status::OK;
  }
}

grpc::Status EvaluationServiceImpl::GetReport(grpc::ServerContext* context,
                                              const v1::GetReportRequest* request,
                                              v1::EvaluationReport* response) {
  absl::StatusOr<server::Principal> who = server::PrincipalOf(context);
  if (!who.ok()) return ToGrpcStatus(who.status());
  if (request->report_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "report_id: required");
  }
  const grpc::Status not_found(grpc::StatusCode::NOT_FOUND,
                               absl::StrCat("report_id: no report \"", request->report_id(), "\""));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::shared_ptr<Evaluation> e = FindLocked(who->tenant, request->report_id())) {
      *response = e->report;
      return grpc::Status::OK;
    }
    auto it = finished_elsewhere_.find(request->report_id());
    if (it != finished_elsewhere_.end()) {
      if (it->second.tenant() != who->tenant) return not_found;
      *response = it->second;
      return grpc::Status::OK;
    }
  }
  // A report of an earlier process or another evaluator: its file.
  for (char c : request->report_id()) {
    if (c == '/' || c == '.') return not_found;  // ids never hold path parts
  }
  absl::StatusOr<v1::EvaluationReport> r = ReadReportFile(
      options_.artifact_root + "/" + ReportDir(request->report_id()) + "/report.json");
  if (!r.ok() || r->tenant() != who->tenant || r->report_id() != request->report_id()) {
    return not_found;
  }
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status EvaluationServiceImpl::CancelEvaluation(grpc::ServerContext* context,
                                                     const v1::CancelEvaluationRequest* request,
                                                     v1::EvaluationReport* response) {
  absl::StatusOr<server::Principal> who = server::PrincipalOf(context);
  if (!who.ok()) return ToGrpcStatus(who.status());
  if (request->report_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "report_id: required");
  }
  std::unique_lock<std::mutex> lock(mu_);
  std::shared_ptr<Evaluation> e = FindLocked(who->tenant, request->report_id());
  if (e == nullptr) {
    auto it = finished_elsewhere_.find(request->report_id());
    if (it != finished_elsewhere_.end() && it->second.tenant() == who->tenant) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("report ", request->report_id(),
                                       " belongs to a job's EVALUATE stage and has ended"));
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("report_id: no report \"", request->report_id(), "\""));
  }
  const v1::EvaluationState state = e->report.state();
  if (state == v1::EVALUATION_STATE_SUCCEEDED || state == v1::EVALUATION_STATE_FAILED) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("report ", request->report_id(), " already ",
                                     StateLabel(state)));
  }
  e->cancel = true;
  if (state == v1::EVALUATION_STATE_QUEUED) {
    FinishLocked(*e, v1::EVALUATION_STATE_CANCELLED, "");
  } else {
    // The runner stops at its next item; wait for it (bounded).
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return e->done; });
  }
  *response = e->report;
  return grpc::Status::OK;
}

void EvaluationServiceImpl::AddFinishedReport(const v1::EvaluationReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  finished_elsewhere_[report.report_id()] = report;
}

void EvaluationServiceImpl::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_) return;
  draining_ = true;
  for (auto& [id, e] : evaluations_) {
    e->cancel = true;
    if (e->report.state() == v1::EVALUATION_STATE_QUEUED) {
      FinishLocked(*e, v1::EVALUATION_STATE_CANCELLED, "the evaluator shut down");
    }
  }
  queue_.clear();
  cv_.notify_all();
}

void EvaluationServiceImpl::RunLoop() {
  for (;;) {
    std::shared_ptr<Evaluation> e;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return draining_ || !queue_.empty(); });
      if (draining_) return;
      e = queue_.front();
      queue_.pop_front();
      if (e->done) continue;  // cancelled while queued
      e->report.set_state(v1::EVALUATION_STATE_RUNNING);
      SetTime(e->report.mutable_start_time());
    }
    Run(e);
  }
}

void EvaluationServiceImpl::Run(const std::shared_ptr<Evaluation>& e) {
  const absl::Time start = absl::Now();
  std::string error;
  std::optional<model::LoadedModel> model, teacher;
  {
    absl::StatusOr<model::LoadedModel> m = model::LoadModel(options_.artifact_root + "/" + e->model_path);
    if (!m.ok()) error = absl::StrCat("model: ", m.status().message());
    else model = *std::move(m);
  }
  if (error.empty() && !e->teacher_path.empty()) {
    absl::StatusOr<model::LoadedModel> t = model::LoadModel(options_.artifact_root + "/" + e->teacher_path);
    if (!t.ok()) error = absl::StrCat("teacher: ", t.status().message());
    else teacher = *std::move(t);
  }
  if (!error.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(*e, v1::EVALUATION_STATE_FAILED, error);
    return;
  }
  EngineInputs in;
  in.model = &*model;
  in.teacher = teacher ? &*teacher : nullptr;
  in.tasks = e->tasks;
  in.artifact_root = options_.artifact_root;
  in.default_texts = options_.default_texts;
  EngineCallbacks cb;
  cb.cancelled = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return e->cancel;
  };
  cb.progress = [&](const v1::EvaluationProgress& p) {
    std::lock_guard<std::mutex> lock(mu_);
    const int task = p.task_index();
    if (task >= 0 && task < e->report.tasks_size()) {
      e->report.mutable_tasks(task)->set_state(v1::EVALUATION_STATE_RUNNING);
    }
    // At most one progress event per second per task (the last item always).
    const absl::Time now = absl::Now();
    auto it = e->progress_time.find(task);
    if (it != e->progress_time.end() && now - it->second < absl::Seconds(1) &&
        p.items_done() < p.items_total()) {
      return;
    }
    e->progress_time[task] = now;
    v1::EvaluationEvent event;
    *event.mutable_progress() = p;
    e->last_progress[task] = e->events.size();
    PushLocked(*e, std::move(event));
  };
  cb.task_done = [&](const v1::EvaluationTaskResult& r) {
    std::lock_guard<std::mutex> lock(mu_);
    for (v1::EvaluationTaskResult& t : *e->report.mutable_tasks()) {
      if (t.name() == r.name()) t = r;
    }
    v1::EvaluationEvent event;
    *event.mutable_task_done() = r;
    PushLocked(*e, std::move(event));
  };
  RunEvaluationTasks(in, cb);
  std::lock_guard<std::mutex> lock(mu_);
  v1::ResourceUsage* u = e->report.mutable_usage();
  const int64_t ns = absl::ToInt64Nanoseconds(absl::Now() - start);
  u->mutable_wall_time()->set_seconds(ns / 1000000000);
  u->mutable_wall_time()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  FinishLocked(*e, e->cancel ? v1::EVALUATION_STATE_CANCELLED : v1::EVALUATION_STATE_SUCCEEDED, "");
}

}  // namespace linearize::evaluator
