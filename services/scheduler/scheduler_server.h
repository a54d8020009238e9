// The scheduler process minus its command line: opens the store, serves
// JobService and WorkerService on one gRPC port through the shared server
// plumbing (services/common: TLS, bearer tokens with per-role access,
// health, reflection, per-RPC and process metrics on /metrics), and runs a
// housekeeping loop (lease expiry, worker lapse, wall-time budgets, store
// metrics). Used by main.cc, the tests and the benchmark.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"
#include "services/common/server.h"
#include "services/scheduler/artifact_root.h"
#include "services/scheduler/job_service.h"
#include "services/scheduler/job_store.h"
#include "services/scheduler/job_watch.h"
#include "services/scheduler/scheduler_metrics.h"
#include "services/scheduler/worker_service.h"

namespace linearize::scheduler {

// The access rules the scheduler serves with: WorkerService only for the
// worker role, JobService only for the user role (admin passes every rule).
std::vector<server::AccessRule> SchedulerAccessRules();

struct SchedulerOptions {
  // gRPC address ("host:port"; port 0 picks a free one, see port()),
  // /metrics address (empty: none), TLS files, tokens file (empty: auth
  // off). Start replaces access_rules with SchedulerAccessRules().
  server::ServerOptions server = {.listen_address = "127.0.0.1:0",
                                  .service_name = "scheduler"};
  // Job store URL (OpenJobStore).
  std::string store_url;
  // Directory all API paths are relative to.
  std::string artifact_root;
  // Store policy (clock, limits, lease and heartbeat timing, retries).
  JobStoreOptions store;
  WorkerServiceOptions workers;
  JobWatcherOptions watch;
  // How often expired leases, lapsed workers and budgets are swept.
  absl::Duration sweep_interval = absl::Seconds(1);
  // How often the store-wide metrics (jobs per state, queue depth, lease
  // expiries) are refreshed.
  absl::Duration stats_interval = absl::Seconds(5);
  // Registry served on /metrics (the scheduler adds its families); null:
  // a new one.
  std::shared_ptr<metrics::Registry> registry;
};

class Scheduler {
 public:
  // Opens the store (migrating it) and starts serving. Errors name the
  // store, the artifact root, the address or the TLS / tokens file at fault.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Start(SchedulerOptions options);
  ~Scheduler();

  int port() const { return server_->port(); }
  // 0 without a /metrics endpoint.
  int metrics_port() const { return server_->metrics_port(); }
  JobStore& store() { return *store_; }
  metrics::Registry& registry() { return *registry_; }
  SchedulerMetrics& metrics() { return *metrics_; }

  // Drains: health NOT_SERVING, watch streams end (UNAVAILABLE), waiting
  // LeaseTask calls return empty; then stops the server (calls still
  // running after `grace` are cancelled) and the housekeeping loop.
  // Idempotent; also done by the destructor.
  void Shutdown(absl::Duration grace = absl::Seconds(2));
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  Scheduler() = default;
  void HousekeepingLoop();
  void RefreshStats();

  SchedulerOptions options_;
  std::shared_ptr<metrics::Registry> registry_;
  std::unique_ptr<SchedulerMetrics> metrics_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<ArtifactRoot> root_;
  Signals signals_;
  std::unique_ptr<JobWatcher> watcher_;
  std::unique_ptr<JobServiceImpl> jobs_;
  std::unique_ptr<WorkerServiceImpl> workers_;
  std::unique_ptr<server::Server> server_;
  std::thread housekeeping_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stopping_;  // ends the housekeeping loop
  absl::Notification stopped_;   // Shutdown has completed
};

}  // namespace linearize::scheduler
