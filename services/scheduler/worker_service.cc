#include "services/scheduler/worker_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/auth.h"
#include "services/common/status.h"
#include "services/scheduler/field_checks.h"

namespace linearize::scheduler {
namespace {

using server::ToGrpcStatus;

void SetDuration(google::protobuf::Duration* d, absl::Duration v) {
  const int64_t ns = absl::ToInt64Nanoseconds(v);
  d->set_seconds(ns / 1000000000);
  d->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// OK, or why the call's token was refused. A refused call still reaches
// its handler (auth.h), which must then do nothing.
absl::Status CallerCheck(const grpc::ServerContextBase* context) {
  return server::PrincipalOf(context).status();
}

// Whether the lease has ended after CompleteTask / FailTask answered
// `s`: OK (it did), FAILED_PRECONDITION or NOT_FOUND (it had already);
// other errors leave it as it was.
bool LeaseIsOver(const absl::Status& s) {
  return s.ok() || s.code() == absl::StatusCode::kFailedPrecondition ||
         s.code() == absl::StatusCode::kNotFound;
}

absl::Status CheckRegistration(const v1::RegisterWorkerRequest& r) {
  if (!r.has_resources()) return absl::InvalidArgumentError("resources: required");
  const v1::WorkerResources& res = r.resources();
  if (res.cpu_cores() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.cpu_cores: must be at least 1, got ", res.cpu_cores()));
  }
  if (res.memory_bytes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.memory_bytes: must be positive, got ", res.memory_bytes()));
  }
  if (res.scratch_bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.scratch_bytes: must not be negative, got ", res.scratch_bytes()));
  }
  if (res.gpus_size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.gpus: at most 1024 entries, got ", res.gpus_size()));
  }
  for (int i = 0; i < res.gpus_size(); ++i) {
    const v1::GpuDevice& g = res.gpus(i);
    const std::string f = absl::StrCat("resources.gpus[", i, "]");
    if (g.index() < 0) return absl::InvalidArgumentError(f + ".index: must not be negative");
    if (g.memory_bytes() <= 0) {
      return absl::InvalidArgumentError(f + ".memory_bytes: must be positive");
    }
    for (const auto& [value, name] : {std::pair{&g.name(), ".name"},
                                      {&g.compute_capability(), ".compute_capability"},
                                      {&g.uuid(), ".uuid"}}) {
      if (absl::Status s = CheckText(*value, 256, f + name); !s.ok()) return s;
    }
  }
  if (absl::Status s = CheckLabels(res.labels(), "resources.labels"); !s.ok()) return s;
  for (int i = 0; i < r.kinds_size(); ++i) {
    if (r.kinds(i) == v1::STAGE_UNSPECIFIED || !v1::Stage_IsValid(r.kinds(i))) {
      return absl::InvalidArgumentError(
          absl::StrCat("kinds[", i, "]: not a task kind (", r.kinds(i), ")"));
    }
  }
  if (absl::Status s = CheckText(r.hostname(), 255, "hostname"); !s.ok()) return s;
  if (absl::Status s = CheckText(r.version(), 128, "version"); !s.ok()) return s;
  return CheckRequestId(r.request_id(), "request_id");
}

}  // namespace

void WorkerServiceImpl::BeginShutdown() {
  stopping_ = true;
  signals_->tasks.WakeAll();
}

std::optional<LeaseInfo> WorkerServiceImpl::TrackedLease(const std::string& lease_id) {
  if (metrics_ == nullptr) return std::nullopt;
  if (std::optional<LeaseInfo> known = metrics_->FindLease(lease_id)) return known;
  absl::StatusOr<LeaseInfo> info = store_->GetLease(lease_id);
  if (!info.ok() || !info->active) return std::nullopt;
  metrics_->LeaseSeen(lease_id, *info);
  return *info;
}

grpc::Status WorkerServiceImpl::RegisterWorker(grpc::ServerContext* context,
                                               const v1::RegisterWorkerRequest* request,
                                               v1::RegisterWorkerResponse* response) {
  if (absl::Status a = CallerCheck(context); !a.ok()) return ToGrpcStatus(a);
  if (absl::Status s = CheckRegistration(*request); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<WorkerRegistration> reg = store_->RegisterWorker(*request);
  if (!reg.ok()) return ToGrpcStatus(reg.status());
  response->set_worker_id(reg->worker_id);
  SetDuration(response->mutable_heartbeat_interval(), store_->options().heartbeat_interval);
  SetDuration(response->mutable_lease_duration(), store_->options().lease_duration);
  SetDuration(response->mutable_max_lease_wait(), options_.max_lease_wait);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::LeaseTask(grpc::ServerContext* context,
                                          const v1::LeaseTaskRequest* request,
                                          v1::LeaseTaskResponse* response) {
  if (absl::Status a = CallerCheck(context); !a.ok()) return ToGrpcStatus(a);
  if (absl::Status s = CheckId(request->worker_id(), "worker_id"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  const google::protobuf::Duration& w = request->wait();
  if (w.seconds() < 0 || w.nanos() < 0 || w.nanos() > 999999999) {
    return Invalid("wait: must not be negative");
  }
  for (int i = 0; i < request->kinds_size(); ++i) {
    if (request->kinds(i) == v1::STAGE_UNSPECIFIED || !v1::Stage_IsValid(request->kinds(i))) {
      return Invalid(absl::StrCat("kinds[", i, "]: not a task kind (", request->kinds(i), ")"));
    }
  }
  const absl::Duration wait = std::min(
      absl::Seconds(w.seconds()) + absl::Nanoseconds(w.nanos()), options_.max_lease_wait);
  const absl::Time deadline = absl::Now() + wait;
  for (;;) {
    absl::StatusOr<std::optional<v1::Task>> task = store_->LeaseTask(*request);
    if (!task.ok()) return ToGrpcStatus(task.status());
    if (task->has_value()) {
      if (metrics_ != nullptr) {
        const v1::Task& t = **task;
        metrics_->LeaseSeen(t.lease_id(), LeaseInfo{.worker_id = request->worker_id(),
                                                    .task_id = t.task_id(),
                                                    .kind = t.kind(),
                                                    .grant_time = absl::Now(),
                                                    .active = true});
      }
      *response->mutable_task() = std::move(**task);
      signals_->jobs.Notify();
      signals_->tasks.Wake();  // there may be more: pass it on
      return grpc::Status::OK;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline || context->IsCancelled() || stopping_) return grpc::Status::OK;
    signals_->tasks.WaitFor(std::min(deadline - now, options_.poll_interval));
  }
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                          const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  if (absl::Status a = CallerCheck(context); !a.ok()) return ToGrpcStatus(a);
  if (request->lease_id().empty()) return Invalid("lease_id: required");
  if (request->logs_size() > 1000) {
    return Invalid(absl::StrCat("logs: at most 1000 lines per heartbeat, got ",
                                request->logs_size()));
  }
  size_t bytes = 0;
  for (const v1::LogLine& l : request->logs()) bytes += l.ByteSizeLong();
  if (bytes > (1u << 20)) {
    return Invalid(absl::StrCat("logs: at most 1 MiB per heartbeat, got ", bytes, " bytes"));
  }
  absl::StatusOr<v1::HeartbeatResponse> r = store_->Heartbeat(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = std::move(*r);
  if (TrackedLease(request->lease_id())) {
    if (response->action() == v1::HEARTBEAT_ACTION_CONTINUE) {
      metrics_->Heartbeat(request->lease_id(), *request, absl::Now());
    } else {
      metrics_->LeaseEnded(request->lease_id(), /*completed=*/false, absl::Now());
    }
  }
  signals_->jobs.Notify();
  if (response->action() != v1::HEARTBEAT_ACTION_CONTINUE) signals_->tasks.Wake();
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::CompleteTask(grpc::ServerContext* context,
                                             const v1::CompleteTaskRequest* request,
                                             v1::CompleteTaskResponse*) {
  if (absl::Status a = CallerCheck(context); !a.ok()) return ToGrpcStatus(a);
  if (request->lease_id().empty()) return Invalid("lease_id: required");
  // Looked up first: a repeated completion finds the lease ended and is
  // not observed twice.
  const bool tracked = TrackedLease(request->lease_id()).has_value();
  absl::Status s = store_->CompleteTask(*request);
  if (tracked && LeaseIsOver(s)) metrics_->LeaseEnded(request->lease_id(), s.ok(), absl::Now());
  if (!s.ok()) return ToGrpcStatus(s);
  signals_->tasks.Wake();
  signals_->jobs.Notify();
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FailTask(grpc::ServerContext* context,
                                         const v1::FailTaskRequest* request,
                                         v1::FailTaskResponse* response) {
  if (absl::Status a = CallerCheck(context); !a.ok()) return ToGrpcStatus(a);
  if (request->lease_id().empty()) return Invalid("lease_id: required");
  if (!v1::FailureCode_IsValid(request->code())) {
    return Invalid(absl::StrCat("code: unknown failure code ", request->code()));
  }
  if (absl::Status s = CheckText(request->message(), 4096, "message"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<v1::FailTaskResponse> r = store_->FailTask(*request);
  if (metrics_ != nullptr && LeaseIsOver(r.status())) {
    metrics_->LeaseEnded(request->lease_id(), /*completed=*/false, absl::Now());
  }
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = std::move(*r);
  signals_->tasks.Wake();
  signals_->jobs.Notify();
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::DeregisterWorker(grpc::ServerContext* context,
                                                 const v1::DeregisterWorkerRequest* request,
                                                 v1::DeregisterWorkerResponse*) {
  if (absl::Status a = CallerCheck(context); !a.ok()) return ToGrpcStatus(a);
  if (absl::Status s = CheckId(request->worker_id(), "worker_id"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::Status s = store_->DeregisterWorker(request->worker_id());
  if (!s.ok()) return ToGrpcStatus(s);
  if (metrics_ != nullptr) metrics_->WorkerGone(request->worker_id());
  signals_->tasks.Wake();
  signals_->jobs.Notify();
  return grpc::Status::OK;
}

}  // namespace linearize::scheduler
