#include "services/common/lease_loop.h"

#include <chrono>

#include "services/common/log.h"

namespace linearize::server {

void StopFlag::Stop(std::string_view reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    reason_ = std::string(reason);
  }
  cv_.notify_all();
}

bool StopFlag::stopped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopped_;
}

std::string StopFlag::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}

bool StopFlag::WaitFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return stopped_; });
}

void RunLeaseLoop(TaskAgent& agent, StopFlag& stop, std::string_view component,
                  const std::function<void(LeaseKeeper&)>& run) {
  while (!stop.stopped()) {
    absl::StatusOr<std::optional<v1::Task>> task = agent.Lease();
    if (!task.ok()) {
      LogWarning(std::string(component) + ".lease_failed", {{"status", task.status()}});
      stop.WaitFor(absl::Seconds(1));
      continue;
    }
    if (!task->has_value()) continue;
    LeaseKeeper keeper(agent, std::move(**task));
    run(keeper);
  }
  if (absl::Status s = agent.Deregister(stop.reason()); !s.ok()) {
    LogWarning(std::string(component) + ".deregister_failed", {{"status", s}});
  }
}

}  // namespace linearize::server
