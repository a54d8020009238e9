// The scheduler's durable state: jobs, their task graphs, leases, workers,
// job events and logs. The scheduler process holds nothing else, so any
// number of replicas can serve from one store and a restart loses nothing.
//
// Every operation is one transaction. Caller errors come back as statuses
// whose message names the field at fault (INVALID_ARGUMENT, NOT_FOUND,
// ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED); storage errors
// as UNAVAILABLE or INTERNAL. Tenancy: an operation taking a `tenant` treats
// another tenant's job as absent (NOT_FOUND).
//
// Semantics follow proto/linearize/v1/job_service.proto and
// worker_service.proto: idempotent submission, job and stage states, leases
// with fencing tokens, requeue on expiry with attempt + 1, retry limits and
// backoff, worker lapse after 3 missed heartbeat intervals.
//
// Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "linearize/v1/job_service.pb.h"
#include "linearize/v1/worker_service.pb.h"

namespace linearize::scheduler {

namespace v1 = ::linearize::v1;

// Store-wide policy. Fixed at open.
struct JobStoreOptions {
  // The scheduler's clock (tests inject a fake one).
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // RUNNING jobs a tenant may have at once; a QUEUED job of a tenant at the
  // limit is not started. 0: no limit.
  int max_running_jobs_per_tenant = 4;
  // QUEUED jobs a tenant may have; CreateJob beyond it is RESOURCE_EXHAUSTED.
  int max_queued_jobs_per_tenant = 100;
  // Attempts per task before the job fails with RETRIES_EXHAUSTED.
  int max_attempts = 3;
  // Delay before attempt n + 1 after attempt n failed or expired:
  // retry_backoff * 2^(n - 1).
  absl::Duration retry_backoff = absl::Seconds(10);
  // Each lease (and each accepted heartbeat) lasts this long.
  absl::Duration lease_duration = absl::Seconds(60);
  // Workers heartbeat this often; a worker silent for 3 intervals lapses.
  absl::Duration heartbeat_interval = absl::Seconds(10);
  // Schema version to migrate to at open; 0 means the latest. Only tests of
  // migrations set it.
  int schema_version = 0;
};

// One task of a new job's graph. Tasks of a stage start when every task of
// the earlier stages has succeeded.
struct TaskPlan {
  v1::Stage kind = v1::STAGE_UNSPECIFIED;
  // The layers an ATTENTION_TRANSFER task trains; unset means all.
  std::optional<v1::LayerBlock> layer_block;
  // GPUs the task needs on one worker, and the memory each must have.
  int32_t gpus = 0;
  int64_t min_gpu_memory_bytes = 0;
};

// A validated submission.
struct NewJob {
  // job_id, tenant, display_name, spec (every default filled in), priority,
  // labels and request_id. The store sets state, stages, times, sequence.
  v1::Job job;
  // The request as the client sent it, serialized deterministically:
  // repeats with the same request_id must carry the same bytes.
  std::string request;
  // spec.teacher resolved to a path under the artifact root.
  std::string teacher_path;
  // The task graph, in stage order. At least one task (PUBLISH).
  std::vector<TaskPlan> tasks;
};

struct CreateJobResult {
  v1::Job job;
  // False when an earlier identical request with the same request_id
  // created the job.
  bool created = false;
};

// A job with the positions of its event and log streams at that moment,
// taken in one transaction (what WatchJob starts from).
struct JobSnapshot {
  v1::Job job;
  int64_t sequence = 0;  // JobEvent.sequence of the job's last state or stage change
  int64_t event_cursor = 0;
  int64_t log_cursor = 0;
};

// An entry of a job's event or log stream; `cursor` orders entries and is
// what to pass as `after` to read on.
struct StoredEvent {
  int64_t cursor = 0;
  v1::JobEvent event;
};
struct StoredLogLine {
  int64_t cursor = 0;
  v1::LogLine line;
};

struct WorkerRegistration {
  std::string worker_id;
  // False when the request_id named an earlier identical registration.
  bool created = false;
};

// What one Sweep did.
struct SweepResult {
  int expired_leases = 0;   // leases past their deadline, tasks requeued or failed
  int lapsed_workers = 0;   // workers silent for 3 heartbeat intervals
  int failed_jobs = 0;      // jobs failed by the sweep (retries or wall time exhausted)
};

// Store-wide numbers for the scheduler's metrics, over every tenant.
struct StoreStats {
  // Jobs in each state; states without jobs are absent.
  std::map<v1::JobState, int64_t> jobs;
  // Tasks waiting for a worker: QUEUED, past their retry backoff, of a
  // QUEUED or RUNNING job, with every earlier stage done.
  int64_t runnable_tasks = 0;
  // Leases that ever expired (deadline passed, or their worker lapsed).
  int64_t expired_leases = 0;
};

// What the store knows about one lease.
struct LeaseInfo {
  std::string worker_id;
  std::string task_id;
  v1::Stage kind = v1::STAGE_UNSPECIFIED;
  absl::Time grant_time;
  // Still held (neither completed, failed, expired nor released).
  bool active = false;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  virtual const JobStoreOptions& options() const = 0;

  // ---- Jobs (JobService) ----

  // Creates a QUEUED job with its tasks. With a request_id: an identical
  // earlier request returns its job (created = false); a different one is
  // ALREADY_EXISTS naming request_id. ALREADY_EXISTS also when the tenant
  // already uses spec.output_model_name (in a job that is not FAILED or
  // CANCELLED); RESOURCE_EXHAUSTED when the tenant's queued quota is full.
  virtual absl::StatusOr<CreateJobResult> CreateJob(const NewJob& job) = 0;

  virtual absl::StatusOr<v1::Job> GetJob(std::string_view tenant, std::string_view job_id) = 0;

  // ListJobs of the API: filters, newest first, page_size and page_token
  // checked (INVALID_ARGUMENT naming the field).
  virtual absl::StatusOr<v1::ListJobsResponse> ListJobs(std::string_view tenant,
                                                        const v1::ListJobsRequest& request) = 0;

  // QUEUED or RUNNING -> CANCELLED (queued tasks dropped; leased tasks are
  // told to stop at their next heartbeat); CANCELLED stays as it is;
  // SUCCEEDED or FAILED is FAILED_PRECONDITION.
  virtual absl::StatusOr<v1::Job> CancelJob(std::string_view tenant, std::string_view job_id,
                                            std::string_view reason) = 0;

  // The SUCCEEDED job of `tenant` that published `model_name`; NOT_FOUND if
  // there is none.
  virtual absl::StatusOr<v1::Job> FindPublishedModel(std::string_view tenant,
                                                     std::string_view model_name) = 0;

  virtual absl::StatusOr<JobSnapshot> SnapshotJob(std::string_view tenant,
                                                  std::string_view job_id) = 0;

  // Events of a job after `after` (a cursor), oldest first, at most `limit`.
  // State and stage changes carry the sequence they create; progress events
  // the current one.
  virtual absl::StatusOr<std::vector<StoredEvent>> ReadJobEvents(std::string_view job_id,
                                                                 int64_t after, int limit) = 0;

  // Log lines of a job after `after`, at least `min_severity`, at most `limit`.
  virtual absl::StatusOr<std::vector<StoredLogLine>> ReadJobLogs(std::string_view job_id,
                                                                 int64_t after,
                                                                 v1::LogSeverity min_severity,
                                                                 int limit) = 0;

  // GetJobLogs of the API: filters, paging, and a next_page_token that is
  // empty only once a terminal job's lines have all been returned.
  virtual absl::StatusOr<v1::GetJobLogsResponse> GetJobLogs(
      std::string_view tenant, const v1::GetJobLogsRequest& request) = 0;

  // ---- Workers and tasks (WorkerService) ----

  // Registers a worker (idempotent on request_id; a different request with
  // the same id is ALREADY_EXISTS). The request must be valid already.
  virtual absl::StatusOr<WorkerRegistration> RegisterWorker(
      const v1::RegisterWorkerRequest& request) = 0;

  // Marks the worker gone and requeues its leased tasks without counting an
  // attempt. Unknown or lapsed workers are OK.
  virtual absl::Status DeregisterWorker(std::string_view worker_id) = 0;

  // Leases the best runnable task the worker can run now, if any: by job
  // priority, then job age; only tasks whose earlier stages have succeeded,
  // whose kind the worker takes, that fit request.free_gpus and the
  // worker's GPU memory, of jobs within budget.max_parallel_tasks, and not
  // starting a job of a tenant already at max_running_jobs_per_tenant.
  // Requeues overdue leases first. Ignores request.wait (the caller polls).
  // NOT_FOUND for an unknown or lapsed worker; INVALID_ARGUMENT for
  // free_gpus beyond the registered GPUs.
  virtual absl::StatusOr<std::optional<v1::Task>> LeaseTask(
      const v1::LeaseTaskRequest& request) = 0;

  // Records progress, logs, usage and the checkpoint; extends the lease.
  // LEASE_LOST for an unknown, expired or superseded lease or a wrong
  // fencing token; CANCEL when the job ended (cancelled, failed, or the
  // token budget ran out). INVALID_ARGUMENT for a checkpoint_path outside
  // the lease's output_path.
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) = 0;

  // Marks the task SUCCEEDED and advances the job (stage end; PUBLISH ends
  // the job SUCCEEDED). Repeating a successful call is OK. NOT_FOUND for an
  // unknown lease; FAILED_PRECONDITION for an expired or superseded lease,
  // a wrong fencing token or a cancelled job; INVALID_ARGUMENT for missing
  // outputs or paths outside the lease's output_path.
  virtual absl::Status CompleteTask(const v1::CompleteTaskRequest& request) = 0;

  // Ends an attempt unsuccessfully: a retryable failure requeues the task
  // (resuming from checkpoint_path) unless attempts are used up; otherwise
  // the job FAILS. Errors as CompleteTask.
  virtual absl::StatusOr<v1::FailTaskResponse> FailTask(const v1::FailTaskRequest& request) = 0;

  // Housekeeping, run periodically by the scheduler: lapses silent workers,
  // requeues (or fails) tasks whose lease expired, fails jobs past their
  // wall-time budget.
  virtual absl::StatusOr<SweepResult> Sweep() = 0;

  // ---- Observability ----

  // Counts for metrics (a few aggregate queries; meant for every few
  // seconds, not per call).
  virtual absl::StatusOr<StoreStats> Stats() = 0;

  // The lease `lease_id`; NOT_FOUND if there is none.
  virtual absl::StatusOr<LeaseInfo> GetLease(std::string_view lease_id) = 0;
};

// Opens the store named by `url`, migrating its schema:
//   sqlite:///abs/path.db, sqlite:relative.db, or a plain path  -> SQLite
//   postgresql://... or postgres://...                         -> PostgreSQL
absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(const std::string& url,
                                                       JobStoreOptions options = {});

}  // namespace linearize::scheduler
