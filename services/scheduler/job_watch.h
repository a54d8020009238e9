// WatchJob: server streams of a job's events. Each stream starts with a
// snapshot; a single poller thread then reads every watched job's new
// events (and log lines) from the store, so changes made by any scheduler
// replica reach every watcher. A local change wakes the poller at once
// (Notifier); otherwise it polls every `poll_interval`.
//
// Per stream: state and stage changes are never dropped; progress is sent
// at most once per `progress_interval` per task and coalesced while the
// client reads slowly; more than `log_buffer` unsent log lines are dropped
// and reported by a LogGap. The stream ends with OK after the event that
// makes the job terminal, and with UNAVAILABLE when the server shuts down.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "linearize/v1/job_service.pb.h"
#include "services/scheduler/job_store.h"
#include "services/scheduler/notifier.h"

namespace linearize::scheduler {

struct JobWatcherOptions {
  absl::Duration poll_interval = absl::Milliseconds(200);
  absl::Duration progress_interval = absl::Seconds(1);
  size_t log_buffer = 1000;
};

class JobWatcher {
 public:
  // `store` and `changes` must outlive the watcher.
  JobWatcher(JobStore* store, Notifier* changes, JobWatcherOptions options = {});
  ~JobWatcher();
  JobWatcher(const JobWatcher&) = delete;
  JobWatcher& operator=(const JobWatcher&) = delete;

  // Serves one WatchJob call (the reactor owns itself).
  grpc::ServerWriteReactor<v1::JobEvent>* Watch(grpc::CallbackServerContext* context,
                                                const v1::WatchJobRequest* request);

  // Ends every stream with UNAVAILABLE, refuses new ones, stops polling.
  void Shutdown();

  // Streams still open (tests).
  int active_streams();

  struct Slot;

 private:
  void Loop();

  JobStore* const store_;
  Notifier* const changes_;
  const JobWatcherOptions options_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace linearize::scheduler
