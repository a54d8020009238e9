#include "services/scheduler/scheduler_server.h"

#include "services/common/log.h"

namespace linearize::scheduler {

std::vector<server::AccessRule> SchedulerAccessRules() {
  return {{"/linearize.v1.WorkerService/", {server::Role::kWorker}},
          {"/linearize.v1.JobService/", {server::Role::kUser}}};
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Start(SchedulerOptions options) {
  std::unique_ptr<Scheduler> s(new Scheduler());
  options.server.access_rules = SchedulerAccessRules();
  s->options_ = options;
  s->registry_ = options.registry ? options.registry : std::make_shared<metrics::Registry>();
  s->metrics_ = std::make_unique<SchedulerMetrics>(*s->registry_);
  absl::StatusOr<ArtifactRoot> root = ArtifactRoot::Open(options.artifact_root);
  if (!root.ok()) return root.status();
  s->root_ = std::make_unique<ArtifactRoot>(*std::move(root));
  absl::StatusOr<std::unique_ptr<JobStore>> store = OpenJobStore(options.store_url, options.store);
  if (!store.ok()) return store.status();
  s->store_ = std::move(*store);
  s->watcher_ = std::make_unique<JobWatcher>(s->store_.get(), &s->signals_.jobs, options.watch);
  s->jobs_ = std::make_unique<JobServiceImpl>(s->store_.get(), s->root_.get(), s->watcher_.get(),
                                              &s->signals_);
  s->workers_ = std::make_unique<WorkerServiceImpl>(s->store_.get(), &s->signals_,
                                                    options.workers, s->metrics_.get());
  s->RefreshStats();  // /metrics is right from the first scrape

  absl::StatusOr<std::unique_ptr<server::Server>> started =
      server::Server::Start(options.server, {s->jobs_.get(), s->workers_.get()}, s->registry_);
  if (!started.ok()) return started.status();
  s->server_ = std::move(*started);
  // Drain before the server stops taking calls: streams and long polls end
  // so that Shutdown does not wait for them.
  s->server_->OnDrain([p = s.get()] {
    p->watcher_->Shutdown();
    p->workers_->BeginShutdown();
  });
  s->housekeeping_ = std::thread([p = s.get()] { p->HousekeepingLoop(); });
  return s;
}

Scheduler::~Scheduler() { Shutdown(); }

void Scheduler::RefreshStats() {
  absl::StatusOr<StoreStats> stats = store_->Stats();
  if (!stats.ok()) {
    server::LogWarning("metrics.refresh_failed", {{"status", stats.status()}});
    return;
  }
  metrics_->Refresh(*stats);
  // A lease silent for a whole lease duration has expired.
  metrics_->ForgetSilentLeases(absl::Now() - store_->options().lease_duration);
}

void Scheduler::HousekeepingLoop() {
  absl::Time last_stats = absl::Now();
  while (!stopping_.WaitForNotificationWithTimeout(options_.sweep_interval)) {
    absl::StatusOr<SweepResult> r = store_->Sweep();
    if (!r.ok()) {
      server::LogError("sweep.failed", {{"status", r.status()}});
    } else if (r->expired_leases > 0 || r->lapsed_workers > 0 || r->failed_jobs > 0) {
      server::LogInfo("sweep", {{"expired_leases", r->expired_leases},
                                {"lapsed_workers", r->lapsed_workers},
                                {"failed_jobs", r->failed_jobs}});
      signals_.tasks.Wake();
      signals_.jobs.Notify();
    }
    if (absl::Now() - last_stats >= options_.stats_interval) {
      RefreshStats();
      last_stats = absl::Now();
    }
  }
}

void Scheduler::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_) {
    server_->Shutdown(grace);  // runs the drain hook first
    server_->Wait();
  } else {
    // Start failed before serving: stop what runs already.
    if (watcher_) watcher_->Shutdown();
    if (workers_) workers_->BeginShutdown();
  }
  stopping_.Notify();
  if (housekeeping_.joinable()) housekeeping_.join();
  stopped_.Notify();
}

void Scheduler::Wait() { stopped_.WaitForNotification(); }

}  // namespace linearize::scheduler
