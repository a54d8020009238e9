#include "services/scheduler/job_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/auth.h"
#include "services/common/status.h"
#include "services/scheduler/field_checks.h"
#include "services/scheduler/submission.h"

namespace linearize::scheduler {

using server::ToGrpcStatus;

grpc::Status JobServiceImpl::SubmitConversion(grpc::ServerContext* context,
                                              const v1::SubmitConversionRequest* request,
                                              v1::Job* response) {
  absl::StatusOr<server::Principal> caller = server::PrincipalOf(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::string& tenant = caller->tenant;
  absl::StatusOr<CreateJobResult> r =
      linearize::scheduler::SubmitConversion(*store_, *root_, tenant, *request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  if (r->created) {
    signals_->tasks.Wake();
    signals_->jobs.Notify();
  }
  *response = std::move(r->job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context,
                                    const v1::GetJobRequest* request, v1::Job* response) {
  absl::StatusOr<server::Principal> caller = server::PrincipalOf(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::string& tenant = caller->tenant;
  if (absl::Status s = CheckId(request->job_id(), "job_id"); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<v1::Job> job = store_->GetJob(tenant, request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  absl::StatusOr<server::Principal> caller = server::PrincipalOf(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::string& tenant = caller->tenant;
  absl::StatusOr<v1::ListJobsResponse> r = store_->ListJobs(tenant, *request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = std::move(*r);
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<v1::JobEvent>* JobServiceImpl::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  return watcher_->Watch(context, request);
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const v1::CancelJobRequest* request, v1::Job* response) {
  absl::StatusOr<server::Principal> caller = server::PrincipalOf(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::string& tenant = caller->tenant;
  if (absl::Status s = CheckId(request->job_id(), "job_id"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckText(request->reason(), 1024, "reason"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<v1::Job> job = store_->CancelJob(tenant, request->job_id(), request->reason());
  if (!job.ok()) return ToGrpcStatus(job.status());
  signals_->jobs.Notify();
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJobLogs(grpc::ServerContext* context,
                                        const v1::GetJobLogsRequest* request,
                                        v1::GetJobLogsResponse* response) {
  absl::StatusOr<server::Principal> caller = server::PrincipalOf(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::string& tenant = caller->tenant;
  if (absl::Status s = CheckId(request->job_id(), "job_id"); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<v1::GetJobLogsResponse> r = store_->GetJobLogs(tenant, *request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = std::move(*r);
  return grpc::Status::OK;
}

}  // namespace linearize::scheduler
