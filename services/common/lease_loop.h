// The task loop shared by linearize-worker and linearize-evaluator: lease a
// task, run it under a LeaseKeeper, repeat until the process stops, then
// deregister with the stop reason.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "services/common/task_agent.h"

namespace linearize::server {

// Set once, when the process starts shutting down; wakes every waiter.
class StopFlag {
 public:
  void Stop(std::string_view reason);
  bool stopped() const;
  std::string reason() const;  // "exit" until Stop
  // Sleeps up to `timeout`; returns early (true) once stopped.
  bool WaitFor(absl::Duration timeout);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::string reason_ = "exit";
};

// Until `stop`: leases from `agent` and calls `run` with each task (a failed
// lease is logged as "<component>.lease_failed" and retried after a second).
// Then deregisters with stop.reason(). `agent` must be registered.
void RunLeaseLoop(TaskAgent& agent, StopFlag& stop, std::string_view component,
                  const std::function<void(LeaseKeeper&)>& run);

}  // namespace linearize::server
