// Wake-ups for threads waiting on the store. Only hints for this process:
// waiters also poll the store, which is how other scheduler replicas'
// changes reach them.
#pragma once

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace linearize::scheduler {

// Wakes every waiter: "a job changed" (watch streams).
class Notifier {
 public:
  // The current generation; pass it to WaitFor.
  uint64_t generation() const {
    absl::MutexLock lock(&mu_);
    return generation_;
  }
  void Notify() {
    absl::MutexLock lock(&mu_);
    ++generation_;
    cv_.SignalAll();
  }
  // Returns true when a Notify happened after `seen` was read, false after
  // `timeout` without one.
  bool WaitFor(uint64_t seen, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (generation_ == seen) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) return generation_ != seen;
    }
    return true;
  }

 private:
  mutable absl::Mutex mu_;
  mutable absl::CondVar cv_;
  uint64_t generation_ = 0;
};

// Wakes one waiter per Wake(): "a task may have become runnable". Waking
// all of 50 long-polling workers for one task would have 49 of them query
// the store for nothing; instead a worker that got a task wakes the next
// one (there may be more). Wake-ups are counted, so one given while no one
// waits is not lost (at most 64 are kept).
class WakeTokens {
 public:
  void Wake() {
    absl::MutexLock lock(&mu_);
    if (tokens_ < 64) ++tokens_;
    cv_.Signal();
  }
  // Returns true when it took a wake-up, false after `timeout` without one.
  bool WaitFor(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (tokens_ == 0) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;
    }
    if (tokens_ == 0) return false;
    --tokens_;
    return true;
  }
  // Wakes every waiter and keeps them awake (shutdown).
  void WakeAll() {
    absl::MutexLock lock(&mu_);
    tokens_ = 1 << 30;
    cv_.SignalAll();
  }

 private:
  absl::Mutex mu_;
  absl::CondVar cv_;
  int tokens_ = 0;
};

}  // namespace linearize::scheduler
