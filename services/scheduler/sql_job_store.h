// JobStore on a SqlDatabase: one implementation of the store's logic for
// both SQLite and PostgreSQL. The job's proto is the record of truth for
// what clients see; the columns beside it mirror what queries filter and
// sort on, and every write goes through SaveJob's compare-and-set on the
// row's version.
//
// Implementation split: sql_job_store.cc (jobs, events, logs),
// sql_task_queue.cc (workers, leasing, expiry and retries, sweeping),
// sql_task_reports.cc (heartbeats, completion, failure), sql_task_util.h
// (helpers of the last two), sql_store_stats.cc (metrics queries).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "services/scheduler/job_store.h"
#include "services/scheduler/sql_database.h"

namespace linearize::scheduler {

// Task states (tasks.state).
enum TaskState : int64_t {
  kTaskQueued = 1,     // waiting for a lease (maybe for earlier stages or backoff)
  kTaskLeased = 2,
  kTaskSucceeded = 3,
  kTaskFailed = 4,
  kTaskCancelled = 5,  // its job ended before it ran to completion
};

// Lease states (leases.state).
enum LeaseState : int64_t {
  kLeaseActive = 1,
  kLeaseCompleted = 2,
  kLeaseFailed = 3,    // FailTask
  kLeaseExpired = 4,   // deadline passed, or its worker lapsed
  kLeaseReleased = 5,  // worker deregistered, or the job ended under it
};

// Worker states (workers.state).
enum WorkerState : int64_t {
  kWorkerActive = 1,
  kWorkerLapsed = 2,
  kWorkerGone = 3,  // deregistered
};

class SqlJobStore final : public JobStore {
 public:
  // `db` must be migrated already (OpenJobStore does it).
  SqlJobStore(std::unique_ptr<SqlDatabase> db, JobStoreOptions options)
      : db_(std::move(db)), options_(std::move(options)) {}

  const JobStoreOptions& options() const override { return options_; }

  absl::StatusOr<CreateJobResult> CreateJob(const NewJob& job) override;
  absl::StatusOr<v1::Job> GetJob(std::string_view tenant, std::string_view job_id) override;
  absl::StatusOr<v1::ListJobsResponse> ListJobs(std::string_view tenant,
                                                const v1::ListJobsRequest& request) override;
  absl::StatusOr<v1::Job> CancelJob(std::string_view tenant, std::string_view job_id,
                                    std::string_view reason) override;
  absl::StatusOr<v1::Job> FindPublishedModel(std::string_view tenant,
                                             std::string_view model_name) override;
  absl::StatusOr<JobSnapshot> SnapshotJob(std::string_view tenant,
                                          std::string_view job_id) override;
  absl::StatusOr<std::vector<StoredEvent>> ReadJobEvents(std::string_view job_id, int64_t after,
                                                         int limit) override;
  absl::StatusOr<std::vector<StoredLogLine>> ReadJobLogs(std::string_view job_id, int64_t after,
                                                         v1::LogSeverity min_severity,
                                                         int limit) override;
  absl::StatusOr<v1::GetJobLogsResponse> GetJobLogs(std::string_view tenant,
                                                    const v1::GetJobLogsRequest& request) override;

  absl::StatusOr<WorkerRegistration> RegisterWorker(
      const v1::RegisterWorkerRequest& request) override;
  absl::Status DeregisterWorker(std::string_view worker_id) override;
  absl::StatusOr<std::optional<v1::Task>> LeaseTask(const v1::LeaseTaskRequest& request) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override;
  absl::Status CompleteTask(const v1::CompleteTaskRequest& request) override;
  absl::StatusOr<v1::FailTaskResponse> FailTask(const v1::FailTaskRequest& request) override;
  absl::StatusOr<SweepResult> Sweep() override;
  absl::StatusOr<StoreStats> Stats() override;
  absl::StatusOr<LeaseInfo> GetLease(std::string_view lease_id) override;

  // ---- Shared by the implementation files; one transaction each. ----

  // A job row loaded for update.
  struct JobRow {
    v1::Job job;
    int64_t version = 0;
    int64_t seq = 0;
    int64_t deadline_us = 0;
    std::string teacher_path;
    // Events to append when the row is saved; state changes get the job as
    // saved.
    std::vector<v1::JobEvent> pending;
  };

  // A task row with its live lease (if any).
  struct TaskRow {
    std::string task_id, job_id, tenant;
    v1::Stage kind = v1::STAGE_UNSPECIFIED;
    int64_t ordinal = 0, state = 0, attempt = 0, fencing_token = 0;
    int64_t gpus = 0, layer_first = -1, layer_count = 0;
    std::string lease_id, checkpoint_path, result_path;
    int64_t lease_deadline_us = 0;
    v1::ResourceUsage usage;
  };

  // A lease row.
  struct LeaseRow {
    std::string lease_id, task_id, worker_id, output_path;
    int64_t fencing_token = 0, attempt = 0, state = 0;
    v1::ResourceUsage usage;
  };

  static absl::StatusOr<JobRow> LoadJob(SqlTransaction& tx, std::string_view job_id);
  // Writes the row if nobody changed it since LoadJob (ABORTED otherwise,
  // which retries the transaction), then appends its pending events.
  absl::Status SaveJob(SqlTransaction& tx, JobRow& row, absl::Time now);
  static absl::StatusOr<std::optional<TaskRow>> LoadTask(SqlTransaction& tx,
                                                         std::string_view task_id);
  static absl::StatusOr<std::optional<LeaseRow>> LoadLease(SqlTransaction& tx,
                                                           std::string_view lease_id);

  // State transitions of the in-memory row (saved by SaveJob).
  static void SetJobState(JobRow& row, v1::JobState state, absl::Time now);
  static void SetStageState(JobRow& row, v1::Stage stage, v1::StageState state, absl::Time now);
  // Fails the job: failure recorded, queued tasks cancelled, the failing
  // stage FAILED.
  absl::Status FailJob(SqlTransaction& tx, JobRow& row, v1::FailureCode code,
                       const std::string& message, v1::Stage stage, const std::string& task_id,
                       int attempts, absl::Time now);
  // Cancels the job's QUEUED tasks.
  static absl::Status CancelQueuedTasks(SqlTransaction& tx, std::string_view job_id);

  // A log line the scheduler writes about a job.
  static absl::Status AppendLog(SqlTransaction& tx, std::string_view job_id,
                                v1::LogLine line);
  static absl::Status SchedulerLog(SqlTransaction& tx, std::string_view job_id,
                                   v1::LogSeverity severity, v1::Stage stage,
                                   std::string_view task_id, std::string message, absl::Time now);

  // Ends the live lease of `task` (state `lease_state`, with `final_usage`
  // if given) and requeues the task with attempt + 1 after backoff, or
  // fails the job when the failure is not retryable or attempts are used
  // up; a task of an ended job is cancelled instead. A non-empty
  // `checkpoint_path` becomes the task's resume point.
  struct RetryDecision {
    bool will_retry = false;
    absl::Time retry_time;
    bool job_failed = false;
  };
  absl::StatusOr<RetryDecision> EndAttempt(SqlTransaction& tx, const TaskRow& task,
                                           LeaseState lease_state, bool retryable,
                                           v1::FailureCode code, const std::string& reason,
                                           const std::string& checkpoint_path,
                                           const v1::ResourceUsage* final_usage, absl::Time now);
  // Ends the live lease of a task whose job has ended: lease released, task
  // cancelled, usage recorded.
  absl::Status ReleaseForEndedJob(SqlTransaction& tx, const TaskRow& task, JobRow& job,
                                  absl::Time now);
  // Lapses silent workers, then requeues overdue leases and those of
  // lapsed workers; adds what it did to `result`.
  absl::Status ExpireOverdueLeases(SqlTransaction& tx, absl::Time now, SweepResult* result);

  SqlDatabase& db() { return *db_; }

 private:
  std::unique_ptr<SqlDatabase> db_;
  JobStoreOptions options_;
};

// Helpers shared by the implementation files.
int64_t ToMicros(absl::Time t);
absl::Time FromMicros(int64_t us);
void SetTimestamp(google::protobuf::Timestamp* ts, absl::Time t);
std::string SerializeDeterministic(const google::protobuf::Message& m);
const char* StageName(v1::Stage stage);
bool IsTerminal(v1::JobState state);
void AddUsage(v1::ResourceUsage* total, const v1::ResourceUsage& add);

}  // namespace linearize::scheduler
