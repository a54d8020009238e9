#include "services/scheduler/scheduler_metrics.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"

namespace linearize::scheduler {
namespace {

// "JOB_STATE_RUNNING" -> "running", "STAGE_FINETUNE" -> "finetune".
std::string LabelOf(const std::string& enum_name, size_t prefix) {
  return absl::AsciiStrToLower(enum_name.substr(std::min(prefix, enum_name.size())));
}

template <typename T>
void RemoveSeries(metrics::Family<T>& family, const metrics::Labels& labels) {
  if (family.Has(labels)) family.Remove(&family.Add(labels));
}

}  // namespace

SchedulerMetrics::SchedulerMetrics(metrics::Registry& r)
    : jobs_(metrics::BuildGauge()
                .Name("linearize_jobs")
                .Help("Conversion jobs in each state, over every tenant.")
                .Register(r)),
      queue_depth_(metrics::BuildGauge()
                       .Name("linearize_queue_depth")
                       .Help("Tasks waiting for a worker (runnable, not leased).")
                       .Register(r)
                       .Add({})),
      task_duration_(metrics::BuildHistogram()
                         .Name("linearize_task_duration_seconds")
                         .Help("Wall time of completed tasks, from lease to completion, by kind.")
                         .Register(r)),
      lease_expiries_(metrics::BuildCounter()
                          .Name("linearize_lease_expiries_total")
                          .Help("Task leases that passed their deadline without a heartbeat "
                                "(or whose worker lapsed).")
                          .Register(r)
                          .Add({})),
      heartbeats_(metrics::BuildCounter()
                      .Name("linearize_worker_heartbeats_total")
                      .Help("Heartbeats accepted, per worker.")
                      .Register(r)),
      tokens_per_second_(metrics::BuildGauge()
                             .Name("linearize_training_tokens_per_second")
                             .Help("Training throughput a worker reports, summed over its tasks.")
                             .Register(r)),
      gpu_memory_(metrics::BuildGauge()
                      .Name("linearize_gpu_memory_bytes")
                      .Help("Peak GPU memory of a worker's tasks (gpu=\"max\": the largest on "
                            "any one GPU).")
                      .Register(r)) {
  for (int s = v1::JOB_STATE_QUEUED; s <= v1::JOB_STATE_CANCELLED; ++s) {
    jobs_.Add({{"state", LabelOf(v1::JobState_Name(s), 10)}});
  }
}

void SchedulerMetrics::Refresh(const StoreStats& stats) {
  for (int s = v1::JOB_STATE_QUEUED; s <= v1::JOB_STATE_CANCELLED; ++s) {
    auto it = stats.jobs.find(static_cast<v1::JobState>(s));
    jobs_.Add({{"state", LabelOf(v1::JobState_Name(s), 10)}})
        .Set(it == stats.jobs.end() ? 0.0 : static_cast<double>(it->second));
  }
  queue_depth_.Set(static_cast<double>(stats.runnable_tasks));
  absl::MutexLock lock(&mu_);
  if (expired_baseline_ && stats.expired_leases > *expired_baseline_) {
    lease_expiries_.Increment(static_cast<double>(stats.expired_leases - *expired_baseline_));
  }
  if (!expired_baseline_ || stats.expired_leases > *expired_baseline_) {
    expired_baseline_ = stats.expired_leases;
  }
}

void SchedulerMetrics::LeaseSeen(const std::string& lease_id, const LeaseInfo& info) {
  absl::MutexLock lock(&mu_);
  Lease& l = leases_[lease_id];
  l.info = info;
  l.last_heartbeat = std::max(l.last_heartbeat, info.grant_time);
}

std::optional<LeaseInfo> SchedulerMetrics::FindLease(const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return std::nullopt;
  return it->second.info;
}

void SchedulerMetrics::Heartbeat(const std::string& lease_id, const v1::HeartbeatRequest& request,
                                 absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease& l = it->second;
  heartbeats_.Add({{"worker", l.info.worker_id}}).Increment();
  l.last_heartbeat = now;
  if (request.has_progress()) l.tokens_per_second = request.progress().tokens_per_second();
  if (request.has_usage()) {
    l.peak_gpu_memory_bytes = std::max(l.peak_gpu_memory_bytes,
                                       request.usage().peak_gpu_memory_bytes());
  }
  UpdateWorkerLocked(l.info.worker_id);
}

void SchedulerMetrics::LeaseEnded(const std::string& lease_id, bool completed, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  const LeaseInfo info = it->second.info;
  leases_.erase(it);
  if (completed) {
    task_duration_
        .Add({{"kind", LabelOf(v1::Stage_Name(info.kind), 6)}},
             metrics::ExponentialBuckets(1, 2, 18))  // 1 s .. 36 h
        .Observe(std::max(0.0, absl::ToDoubleSeconds(now - info.grant_time)));
  }
  UpdateWorkerLocked(info.worker_id);
}

void SchedulerMetrics::ForgetSilentLeases(absl::Time cutoff) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> workers;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.last_heartbeat < cutoff) {
      workers.push_back(it->second.info.worker_id);
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  for (const std::string& w : workers) UpdateWorkerLocked(w);
}

void SchedulerMetrics::WorkerGone(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  std::erase_if(leases_, [&](const auto& e) { return e.second.info.worker_id == worker_id; });
  UpdateWorkerLocked(worker_id);
  RemoveSeries(heartbeats_, {{"worker", worker_id}});
}

int SchedulerMetrics::tracked_leases() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(leases_.size());
}

void SchedulerMetrics::UpdateWorkerLocked(const std::string& worker_id) {
  double tokens = 0;
  int64_t gpu_memory = 0;
  bool any = false;
  for (const auto& [id, l] : leases_) {
    if (l.info.worker_id != worker_id) continue;
    any = true;
    tokens += l.tokens_per_second;
    gpu_memory = std::max(gpu_memory, l.peak_gpu_memory_bytes);
  }
  const metrics::Labels worker{{"worker", worker_id}};
  const metrics::Labels gpu{{"worker", worker_id}, {"gpu", "max"}};
  if (any) {
    tokens_per_second_.Add(worker).Set(tokens);
  } else {
    RemoveSeries(tokens_per_second_, worker);
  }
  if (any && gpu_memory > 0) {
    gpu_memory_.Add(gpu).Set(static_cast<double>(gpu_memory));
  } else {
    RemoveSeries(gpu_memory_, gpu);
  }
}

}  // namespace linearize::scheduler
