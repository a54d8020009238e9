// WorkerService: the internal API workers lease tasks through. Thin: checks
// the caller (server::PrincipalOf: the access rules let only worker and
// admin tokens through) and the request, forwards to the job store (which
// does leases and fencing), and turns LeaseTask into a long poll that wakes
// when a task may have become runnable here, and polls the store for other
// replicas' changes. Feeds the per-worker metrics (SchedulerMetrics).
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "linearize/v1/worker_service.grpc.pb.h"
#include "services/scheduler/job_service.h"
#include "services/scheduler/job_store.h"
#include "services/scheduler/scheduler_metrics.h"

namespace linearize::scheduler {

struct WorkerServiceOptions {
  // Longest LeaseTask wait accepted (longer ones are clamped).
  absl::Duration max_lease_wait = absl::Seconds(60);
  // How often a waiting LeaseTask looks at the store without a local wake-up.
  absl::Duration poll_interval = absl::Milliseconds(500);
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `store`, `signals` and `metrics` (may be null: no metrics) must outlive
  // the service. Heartbeat interval and lease duration come from the
  // store's options.
  WorkerServiceImpl(JobStore* store, Signals* signals, WorkerServiceOptions options = {},
                    SchedulerMetrics* metrics = nullptr)
      : store_(store), signals_(signals), options_(options), metrics_(metrics) {}

  // Ends waiting LeaseTask calls (empty responses) and refuses new waits.
  void BeginShutdown();

  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  grpc::Status LeaseTask(grpc::ServerContext* context, const v1::LeaseTaskRequest* request,
                         v1::LeaseTaskResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status CompleteTask(grpc::ServerContext* context, const v1::CompleteTaskRequest* request,
                            v1::CompleteTaskResponse* response) override;
  grpc::Status FailTask(grpc::ServerContext* context, const v1::FailTaskRequest* request,
                        v1::FailTaskResponse* response) override;
  grpc::Status DeregisterWorker(grpc::ServerContext* context,
                                const v1::DeregisterWorkerRequest* request,
                                v1::DeregisterWorkerResponse* response) override;

 private:
  // The lease as the metrics know it, asking the store when they do not
  // (a lease granted before a restart or by another replica); nullopt
  // without metrics or when the store cannot say.
  std::optional<LeaseInfo> TrackedLease(const std::string& lease_id);

  JobStore* const store_;
  Signals* const signals_;
  const WorkerServiceOptions options_;
  SchedulerMetrics* const metrics_;
  std::atomic<bool> stopping_{false};
};

}  // namespace linearize::scheduler
