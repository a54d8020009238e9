// JobService: the public API of the scheduler. Thin: takes the tenant from
// the call's principal (server::PrincipalOf: the bearer token's tenant, or
// with auth off the x-linearize-tenant header or "default"), checks and
// forwards to the submission logic and the job store, and maps statuses to
// gRPC codes. WatchJob is served by JobWatcher.
#pragma once

#include <grpcpp/grpcpp.h>

#include "linearize/v1/job_service.grpc.pb.h"
#include "services/scheduler/artifact_root.h"
#include "services/scheduler/job_store.h"
#include "services/scheduler/job_watch.h"
#include "services/scheduler/notifier.h"

namespace linearize::scheduler {

// Local wake-ups: `tasks` when a task may have become runnable (one waiting
// worker), `jobs` when any job changed (every watcher).
struct Signals {
  WakeTokens tasks;
  Notifier jobs;
};

class JobServiceImpl final
    : public v1::JobService::WithCallbackMethod_WatchJob<v1::JobService::Service> {
 public:
  // All arguments must outlive the service.
  JobServiceImpl(JobStore* store, const ArtifactRoot* root, JobWatcher* watcher, Signals* signals)
      : store_(store), root_(root), watcher_(watcher), signals_(signals) {}

  grpc::Status SubmitConversion(grpc::ServerContext* context,
                                const v1::SubmitConversionRequest* request,
                                v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const v1::WatchJobRequest* request) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJobLogs(grpc::ServerContext* context, const v1::GetJobLogsRequest* request,
                          v1::GetJobLogsResponse* response) override;

 private:
  JobStore* const store_;
  const ArtifactRoot* const root_;
  JobWatcher* const watcher_;
  Signals* const signals_;
};

}  // namespace linearize::scheduler
