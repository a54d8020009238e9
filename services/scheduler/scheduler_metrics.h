// The scheduler's Prometheus metrics, under the names that deploy/'s
// dashboard and alert rules use:
//   linearize_jobs{state}                       gauge: jobs per state (store-wide)
//   linearize_queue_depth                       gauge: tasks waiting for a worker
//   linearize_task_duration_seconds{kind}       histogram: lease to CompleteTask
//   linearize_lease_expiries_total              counter: leases that expired
//   linearize_worker_heartbeats_total{worker}   counter: heartbeats accepted
//   linearize_training_tokens_per_second{worker}  gauge: sum over the worker's leases
//   linearize_gpu_memory_bytes{worker,gpu}      gauge: peak GPU memory of the
//                                               worker's tasks
// The first two and the expiries come from the store (Refresh, every few
// seconds), so they count every replica's work; the rest from the calls
// this process serves.
//
// GPU memory: a heartbeat carries only ResourceUsage.peak_gpu_memory_bytes,
// the most any one GPU of the task held, so the gauge has one series per
// worker with gpu="max" (the largest over its live tasks); CPU-only tasks
// add none.
//
// Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"
#include "services/scheduler/job_store.h"

namespace linearize::scheduler {

class SchedulerMetrics {
 public:
  // Registers the families in `registry`, which must outlive this object.
  explicit SchedulerMetrics(metrics::Registry& registry);

  // Store-wide numbers: jobs per state (every state, 0 when none), queue
  // depth, and lease expiries (the counter grows by the increase since the
  // previous Refresh; the first call only takes the baseline).
  void Refresh(const StoreStats& stats);

  // A lease granted (or first seen, after a restart or from another
  // replica) with what the store knows about it.
  void LeaseSeen(const std::string& lease_id, const LeaseInfo& info);
  // What LeaseSeen recorded about a lease still tracked; nullopt otherwise.
  std::optional<LeaseInfo> FindLease(const std::string& lease_id);
  // An accepted heartbeat of a tracked lease: counts it for the worker and
  // takes its throughput and GPU memory.
  void Heartbeat(const std::string& lease_id, const v1::HeartbeatRequest& request, absl::Time now);
  // The lease ended (completed, failed, cancelled, lost); with `completed`,
  // its wall time since the grant is observed for its task kind.
  void LeaseEnded(const std::string& lease_id, bool completed, absl::Time now);
  // Forgets leases that have not heartbeaten since `cutoff` (they expired).
  void ForgetSilentLeases(absl::Time cutoff);
  // The worker deregistered: its leases and series go.
  void WorkerGone(const std::string& worker_id);

  // Leases tracked (tests).
  int tracked_leases();

 private:
  struct Lease {
    LeaseInfo info;
    double tokens_per_second = 0;
    int64_t peak_gpu_memory_bytes = 0;
    absl::Time last_heartbeat;
  };
  // Recomputes the worker's gauges from its leases; drops them when it
  // has none.
  void UpdateWorkerLocked(const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  metrics::Family<metrics::Gauge>& jobs_;
  metrics::Gauge& queue_depth_;
  metrics::Family<metrics::Histogram>& task_duration_;
  metrics::Counter& lease_expiries_;
  metrics::Family<metrics::Counter>& heartbeats_;
  metrics::Family<metrics::Gauge>& tokens_per_second_;
  metrics::Family<metrics::Gauge>& gpu_memory_;

  absl::Mutex mu_;
  std::optional<int64_t> expired_baseline_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace linearize::scheduler
