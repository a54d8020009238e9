// SqlJobStore: the read-only queries behind the scheduler's metrics.
#include "absl/strings/str_cat.h"
#include "services/scheduler/sql_job_store.h"

namespace linearize::scheduler {

absl::StatusOr<StoreStats> SqlJobStore::Stats() {
  StoreStats stats;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    stats = StoreStats();
    absl::StatusOr<std::vector<SqlRow>> jobs =
        tx.Query("SELECT state, COUNT(*) FROM jobs GROUP BY state", {});
    if (!jobs.ok()) return jobs.status();
    for (const SqlRow& r : *jobs) stats.jobs[static_cast<v1::JobState>(r.Int(0))] = r.Int(1);
    // The leasing query's conditions that do not depend on the worker.
    absl::StatusOr<std::vector<SqlRow>> runnable = tx.Query(
        "SELECT COUNT(*) FROM tasks t JOIN jobs j ON j.job_id = t.job_id "
        "WHERE t.state = ? AND t.not_before_us <= ? AND j.state IN (?, ?) "
        "AND NOT EXISTS (SELECT 1 FROM tasks d WHERE d.job_id = t.job_id AND d.kind < t.kind "
        "AND d.state <> ?)",
        {int64_t{kTaskQueued}, ToMicros(options_.clock()), int64_t{v1::JOB_STATE_QUEUED},
         int64_t{v1::JOB_STATE_RUNNING}, int64_t{kTaskSucceeded}});
    if (!runnable.ok()) return runnable.status();
    stats.runnable_tasks = (*runnable)[0].Int(0);
    absl::StatusOr<std::vector<SqlRow>> expired =
        tx.Query("SELECT COUNT(*) FROM leases WHERE state = ?", {int64_t{kLeaseExpired}});
    if (!expired.ok()) return expired.status();
    stats.expired_leases = (*expired)[0].Int(0);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return stats;
}

absl::StatusOr<LeaseInfo> SqlJobStore::GetLease(std::string_view lease_id) {
  LeaseInfo info;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
        "SELECT l.worker_id, l.task_id, t.kind, l.grant_us, l.state FROM leases l "
        "JOIN tasks t ON t.task_id = l.task_id WHERE l.lease_id = ?",
        {std::string(lease_id)});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) {
      return absl::NotFoundError(
          absl::StrCat("lease_id: unknown lease \"", std::string(lease_id), "\""));
    }
    const SqlRow& r = (*rows)[0];
    info.worker_id = r.Str(0);
    info.task_id = r.Str(1);
    info.kind = static_cast<v1::Stage>(r.Int(2));
    info.grant_time = FromMicros(r.Int(3));
    info.active = r.Int(4) == kLeaseActive;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return info;
}

}  // namespace linearize::scheduler
