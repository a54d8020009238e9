// The task-running side of WorkerService (proto/linearize/v1/worker_service.proto),
// shared by the processes that do the scheduler's work (linearize-worker,
// linearize-evaluator):
//   TaskAgent    registration, the LeaseTask long poll, re-registration
//                after a lapse, deregistration;
//   LeaseKeeper  one leased task: heartbeats from its own thread with the
//                latest progress, checkpoint, logs and resource usage, and
//                the verdict (CANCEL / LEASE_LOST) that ends the attempt;
//                then CompleteTask or FailTask.
//
//   auto agent = TaskAgent::Create(options);
//   (*agent)->Register();
//   while (auto task = (*agent)->Lease(); task.ok() && *task) {
//     LeaseKeeper keeper(**agent, **task);
//     ... work, calling keeper.SetProgress(...), checking keeper.verdict() ...
//     keeper.Complete(outputs);   // refused after CANCEL / LEASE_LOST
//   }
//   (*agent)->Deregister("SIGTERM");
#pragma once

#include <grpcpp/channel.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "linearize/v1/worker_service.grpc.pb.h"
#include "services/common/client.h"

namespace linearize::server {

struct TaskAgentOptions {
  ClientOptions scheduler{};  // address and TLS of the scheduler
  std::string token{};        // bearer token (worker role); empty with auth off
  // hostname, version, resources and kinds; request_id is filled in (one
  // per process) when empty.
  v1::RegisterWorkerRequest registration{};
  // LeaseTask long-poll length (clamped by the scheduler's max_lease_wait).
  absl::Duration lease_wait = absl::Seconds(30);
  // Deadline of every other call.
  absl::Duration rpc_timeout = absl::Seconds(30);
};

// Thread-safe.
class TaskAgent {
 public:
  // INVALID_ARGUMENT for bad TLS options or an empty address.
  static absl::StatusOr<std::unique_ptr<TaskAgent>> Create(TaskAgentOptions options);

  // Registers, retrying while the scheduler is unreachable (with backoff)
  // until it answers or Stop() is called (then CANCELLED). Other errors
  // (INVALID_ARGUMENT, PERMISSION_DENIED, ...) are returned at once.
  absl::Status Register();

  // Waits up to lease_wait for a task. nullopt when none arrived or Stop()
  // was called. Registers again when the scheduler forgot this worker
  // (NOT_FOUND: lapsed). UNAVAILABLE and similar are returned; the caller
  // waits a little and polls again.
  absl::StatusOr<std::optional<v1::Task>> Lease();

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  // Both retry UNAVAILABLE a few times: a completion must not be lost to a
  // blip, and repeating it with the same lease is harmless.
  absl::Status Complete(const v1::CompleteTaskRequest& request);
  absl::StatusOr<v1::FailTaskResponse> Fail(const v1::FailTaskRequest& request);
  // Hands back every lease of this worker (its tasks are re-queued without
  // counting an attempt). OK when not registered.
  absl::Status Deregister(std::string_view reason);

  // Ends a pending Lease() and the Register() retries; later ones return
  // at once.
  void Stop();
  bool stopped() const { return stopped_.load(); }

  std::string worker_id() const;
  absl::Duration heartbeat_interval() const;
  absl::Duration lease_duration() const;

 private:
  explicit TaskAgent(TaskAgentOptions options) : options_(std::move(options)) {}
  void Prepare(grpc::ClientContext* context, absl::Duration timeout) const;

  TaskAgentOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::atomic<bool> stopped_{false};
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  std::string worker_id_;                                 // guarded by mu_
  absl::Duration heartbeat_interval_ = absl::Seconds(10);  // guarded by mu_
  absl::Duration lease_duration_ = absl::Seconds(60);      // guarded by mu_
  absl::Duration max_lease_wait_ = absl::Seconds(60);      // guarded by mu_
  grpc::ClientContext* pending_lease_ = nullptr;          // guarded by mu_
};

// Keeps one leased task alive. Thread-safe; the heartbeat thread starts in
// the constructor and stops in Complete, Fail, Release or the destructor.
class LeaseKeeper {
 public:
  LeaseKeeper(TaskAgent& agent, v1::Task task);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  const v1::Task& task() const { return task_; }

  // What the next heartbeat reports. The stage is filled from the task.
  void SetProgress(const v1::StageProgress& progress);
  v1::StageProgress progress() const;
  // Latest complete checkpoint, relative to the artifact root and inside
  // the task's output_path.
  void SetCheckpoint(const std::string& path);
  std::string checkpoint() const;
  void SetTokensProcessed(int64_t tokens);
  // A log line for the job's log, sent with the next heartbeat (at most
  // 1000 are kept; older ones are dropped first).
  void Log(v1::LogSeverity severity, const std::string& message,
           const std::map<std::string, std::string>& fields = {});

  // HEARTBEAT_ACTION_CANCEL or _LEASE_LOST once a heartbeat answered so;
  // HEARTBEAT_ACTION_UNSPECIFIED while the lease is fine. After either,
  // stop working and do not commit (Complete/Fail refuse).
  v1::HeartbeatAction verdict() const;
  bool should_stop() const { return verdict() != v1::HEARTBEAT_ACTION_UNSPECIFIED; }

  // Sends a heartbeat now with everything pending; returns its action
  // (UNSPECIFIED when the call failed).
  v1::HeartbeatAction Flush();

  // This attempt's resources so far: CPU time of the process since the
  // lease began, wall time, tokens, peak resident memory.
  v1::ResourceUsage Usage() const;

  // End the lease (the heartbeat thread stops first). FAILED_PRECONDITION
  // without calling the scheduler after a CANCEL / LEASE_LOST verdict.
  absl::Status Complete(v1::TaskOutputs outputs);
  absl::StatusOr<v1::FailTaskResponse> Fail(v1::FailureCode code, const std::string& message,
                                            bool retryable);
  // Stops heartbeating without ending the lease (a shutting-down worker
  // that deregisters, which hands the lease back).
  void StopHeartbeats();

 private:
  void Loop();
  v1::HeartbeatRequest BuildHeartbeat(std::vector<v1::LogLine>* logs_taken);

  TaskAgent& agent_;
  const v1::Task task_;
  const absl::Time start_;
  const double cpu_start_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool has_progress_ = false;
  v1::StageProgress progress_;
  std::string checkpoint_;
  int64_t tokens_ = 0;
  std::vector<v1::LogLine> logs_;
  v1::HeartbeatAction verdict_ = v1::HEARTBEAT_ACTION_UNSPECIFIED;
  std::mutex send_mu_;  // one heartbeat at a time
  std::thread thread_;
};

// CPU seconds (user + system) of this process so far.
double ProcessCpuSeconds();
// Peak resident memory of this process, in bytes.
int64_t ProcessPeakResidentBytes();

}  // namespace linearize::server
