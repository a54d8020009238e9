// SqlJobStore: workers, leasing, lease expiry and retries, sweeping.
//
// Fencing: every lease of a task gets fencing_token = previous + 1, and a
// report (sql_task_reports.cc) is honoured only when its lease is the task's
// live lease, is ACTIVE, is within its deadline and carries that lease's
// token. Anything else is refused without touching the task, so a worker
// presumed dead cannot overwrite its successor's results.
#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/scheduler/ids.h"
#include "services/scheduler/sql_job_store.h"
#include "services/scheduler/sql_task_util.h"

namespace linearize::scheduler {

using namespace internal;  // NOLINT: the store's own helpers

// ---- Row helpers ----

absl::StatusOr<std::optional<SqlJobStore::TaskRow>> SqlJobStore::LoadTask(
    SqlTransaction& tx, std::string_view task_id) {
  absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
      absl::StrCat("SELECT ", kTaskColumns, " FROM tasks WHERE task_id = ?"),
      {std::string(task_id)});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return ParseTask((*rows)[0]);
}

absl::StatusOr<std::optional<SqlJobStore::LeaseRow>> SqlJobStore::LoadLease(
    SqlTransaction& tx, std::string_view lease_id) {
  absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
      "SELECT lease_id, task_id, worker_id, output_path, fencing_token, attempt, state, usage "
      "FROM leases WHERE lease_id = ?",
      {std::string(lease_id)});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  const SqlRow& r = (*rows)[0];
  LeaseRow l;
  l.lease_id = r.Str(0);
  l.task_id = r.Str(1);
  l.worker_id = r.Str(2);
  l.output_path = r.Str(3);
  l.fencing_token = r.Int(4);
  l.attempt = r.Int(5);
  l.state = r.Int(6);
  if (!r.IsNull(7)) l.usage.ParseFromString(r.Str(7));
  return l;
}

absl::Status SqlJobStore::ReleaseForEndedJob(SqlTransaction& tx, const TaskRow& task,
                                             JobRow& job, absl::Time now) {
  absl::StatusOr<std::optional<LeaseRow>> lease = LoadLease(tx, task.lease_id);
  if (!lease.ok()) return lease.status();
  v1::ResourceUsage usage = task.usage;
  if (*lease) {
    ChargeUsage(job, task.kind, &usage, (*lease)->usage);
    absl::Status s = tx.Exec("UPDATE leases SET state = ? WHERE lease_id = ?",
                             {int64_t{kLeaseReleased}, task.lease_id})
                         .status();
    if (!s.ok()) return s;
  }
  return tx
      .Exec("UPDATE tasks SET state = ?, lease_id = NULL, lease_deadline_us = 0, usage = ? "
            "WHERE task_id = ?",
            {int64_t{kTaskCancelled}, SqlBlob{usage.SerializeAsString()}, task.task_id})
      .status();
}

absl::StatusOr<SqlJobStore::RetryDecision> SqlJobStore::EndAttempt(
    SqlTransaction& tx, const TaskRow& task, LeaseState lease_state, bool retryable,
    v1::FailureCode code, const std::string& reason, const std::string& checkpoint_path,
    const v1::ResourceUsage* final_usage, absl::Time now) {
  RetryDecision decision;
  absl::StatusOr<JobRow> job = LoadJob(tx, task.job_id);
  if (!job.ok()) return job.status();
  if (IsTerminal(job->job.state())) {
    if (absl::Status s = ReleaseForEndedJob(tx, task, *job, now); !s.ok()) return s;
    if (absl::Status s = SaveJob(tx, *job, now); !s.ok()) return s;
    return decision;
  }
  absl::StatusOr<std::optional<LeaseRow>> lease = LoadLease(tx, task.lease_id);
  if (!lease.ok()) return lease.status();
  v1::ResourceUsage usage = task.usage;
  const v1::ResourceUsage attempt_usage =
      final_usage ? *final_usage : (*lease ? (*lease)->usage : v1::ResourceUsage());
  ChargeUsage(*job, task.kind, &usage, attempt_usage);
  absl::Status s = tx.Exec("UPDATE leases SET state = ?, usage = ? WHERE lease_id = ?",
                           {int64_t{lease_state}, SqlBlob{attempt_usage.SerializeAsString()},
                            task.lease_id})
                       .status();
  if (!s.ok()) return s;
  const std::string checkpoint = checkpoint_path.empty() ? task.checkpoint_path : checkpoint_path;
  const std::string what = absl::StrCat("task ", task.task_id, " (", StageName(task.kind),
                                        BlockText(task), ") attempt ", task.attempt);
  if (retryable && task.attempt < options_.max_attempts) {
    decision.will_retry = true;
    decision.retry_time =
        now + options_.retry_backoff * std::ldexp(1.0, static_cast<int>(task.attempt) - 1);
    s = tx.Exec("UPDATE tasks SET state = ?, attempt = attempt + 1, lease_id = NULL, "
                "lease_deadline_us = 0, not_before_us = ?, checkpoint_path = ?, usage = ? "
                "WHERE task_id = ?",
                {int64_t{kTaskQueued}, ToMicros(decision.retry_time), checkpoint,
                 SqlBlob{usage.SerializeAsString()}, task.task_id})
            .status();
    if (!s.ok()) return s;
    job->job.set_status_message(absl::StrCat(StageName(task.kind), BlockText(task),
                                             ": retrying (attempt ", task.attempt + 1, " of ",
                                             options_.max_attempts, ") after: ", reason));
    s = SchedulerLog(tx, task.job_id, v1::LOG_SEVERITY_WARNING, task.kind, task.task_id,
                     absl::StrCat(what, " failed: ", reason, "; retrying",
                                  checkpoint.empty() ? "" : absl::StrCat(" from ", checkpoint)),
                     now);
    if (!s.ok()) return s;
  } else {
    decision.job_failed = true;
    s = tx.Exec("UPDATE tasks SET state = ?, lease_id = NULL, lease_deadline_us = 0, "
                "checkpoint_path = ?, usage = ? WHERE task_id = ?",
                {int64_t{kTaskFailed}, checkpoint, SqlBlob{usage.SerializeAsString()},
                 task.task_id})
            .status();
    if (!s.ok()) return s;
    const v1::FailureCode job_code = retryable ? v1::FAILURE_CODE_RETRIES_EXHAUSTED : code;
    const std::string message =
        retryable ? absl::StrCat(what, " failed and no attempts are left (", options_.max_attempts,
                                 " allowed); last error: ", reason)
                  : absl::StrCat(what, " failed: ", reason);
    s = FailJob(tx, *job, job_code, message, task.kind, task.task_id,
                static_cast<int>(task.attempt), now);
    if (!s.ok()) return s;
  }
  if (s = SaveJob(tx, *job, now); !s.ok()) return s;
  return decision;
}

absl::Status SqlJobStore::ExpireOverdueLeases(SqlTransaction& tx, absl::Time now,
                                              SweepResult* result) {
  absl::StatusOr<int64_t> lapsed = tx.Exec(
      "UPDATE workers SET state = ? WHERE state = ? AND last_seen_us < ?",
      {int64_t{kWorkerLapsed}, int64_t{kWorkerActive},
       ToMicros(now - 3 * options_.heartbeat_interval)});
  if (!lapsed.ok()) return lapsed.status();
  result->lapsed_workers += static_cast<int>(*lapsed);
  // Under PostgreSQL's locking mode the rows are locked (and their state
  // rechecked) so that a heartbeat committing meanwhile is not overwritten.
  absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
      absl::StrCat("SELECT ", kTaskColumns, ", (SELECT worker_id FROM leases l WHERE "
                   "l.lease_id = tasks.lease_id) FROM tasks WHERE state = ? AND "
                   "(lease_deadline_us < ? OR EXISTS (SELECT 1 FROM leases l JOIN workers w ON "
                   "w.worker_id = l.worker_id WHERE l.lease_id = tasks.lease_id AND w.state <> ?))",
                   tx.dialect() == SqlDialect::kPostgres ? " FOR UPDATE OF tasks SKIP LOCKED" : ""),
      {int64_t{kTaskLeased}, ToMicros(now), int64_t{kWorkerActive}});
  if (!rows.ok()) return rows.status();
  for (const SqlRow& r : *rows) {
    TaskRow task = ParseTask(r);
    absl::StatusOr<RetryDecision> d =
        EndAttempt(tx, task, kLeaseExpired, /*retryable=*/true, v1::FAILURE_CODE_RETRIES_EXHAUSTED,
                   absl::StrCat("lease ", task.lease_id, " of worker ", r.Str(16),
                                " expired without a heartbeat"),
                   "", nullptr, now);
    if (!d.ok()) return d.status();
    ++result->expired_leases;
    if (d->job_failed) ++result->failed_jobs;
  }
  return absl::OkStatus();
}

// ---- Workers ----

absl::StatusOr<WorkerRegistration> SqlJobStore::RegisterWorker(
    const v1::RegisterWorkerRequest& request) {
  const std::string bytes = SerializeDeterministic(request);
  int64_t gpu_memory = 0;
  for (const v1::GpuDevice& g : request.resources().gpus()) {
    gpu_memory = gpu_memory == 0 ? g.memory_bytes() : std::min(gpu_memory, g.memory_bytes());
  }
  int64_t kinds = 0;
  for (int k : request.kinds()) kinds |= int64_t{1} << k;
  WorkerRegistration reg;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    const absl::Time now = options_.clock();
    if (!request.request_id().empty()) {
      absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
          "SELECT worker_id, request FROM workers WHERE request_id = ?", {request.request_id()});
      if (!rows.ok()) return rows.status();
      if (!rows->empty()) {
        if ((*rows)[0].Str(1) != bytes) {
          return absl::AlreadyExistsError(absl::StrCat(
              "request_id: \"", request.request_id(), "\" was already used by worker ",
              (*rows)[0].Str(0), " for a different registration"));
        }
        // A retried registration: the same worker, alive again.
        reg.worker_id = (*rows)[0].Str(0);
        reg.created = false;
        return tx.Exec("UPDATE workers SET state = ?, last_seen_us = ? WHERE worker_id = ?",
                       {int64_t{kWorkerActive}, ToMicros(now), reg.worker_id})
            .status();
      }
    }
    reg.worker_id = NewId("worker");
    reg.created = true;
    SqlValue request_id =
        request.request_id().empty() ? SqlValue{} : SqlValue{request.request_id()};
    return tx
        .Exec("INSERT INTO workers (worker_id, request_id, request, gpus, gpu_memory, "
              "memory_bytes, kinds, state, register_us, last_seen_us) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              {reg.worker_id, request_id, SqlBlob{bytes},
               int64_t{request.resources().gpus_size()}, gpu_memory,
               request.resources().memory_bytes(), kinds, int64_t{kWorkerActive}, ToMicros(now),
               ToMicros(now)})
        .status();
  });
  if (!status.ok()) return status;
  return reg;
}

absl::Status SqlJobStore::DeregisterWorker(std::string_view worker_id) {
  return db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    const absl::Time now = options_.clock();
    absl::Status s = tx.Exec("UPDATE workers SET state = ? WHERE worker_id = ?",
                             {int64_t{kWorkerGone}, std::string(worker_id)})
                         .status();
    if (!s.ok()) return s;
    absl::StatusOr<std::vector<SqlRow>> rows =
        tx.Query(absl::StrCat("SELECT ", kTaskColumns, " FROM tasks WHERE state = ? AND lease_id "
                              "IN (SELECT lease_id FROM leases WHERE worker_id = ? AND state = ?)"),
                 {int64_t{kTaskLeased}, std::string(worker_id), int64_t{kLeaseActive}});
    if (!rows.ok()) return rows.status();
    for (const SqlRow& r : *rows) {
      TaskRow task = ParseTask(r);
      absl::StatusOr<JobRow> job = LoadJob(tx, task.job_id);
      if (!job.ok()) return job.status();
      if (IsTerminal(job->job.state())) {
        s = ReleaseForEndedJob(tx, task, *job, now);
      } else {
        // Requeued at once and without counting an attempt.
        absl::StatusOr<std::optional<LeaseRow>> lease = LoadLease(tx, task.lease_id);
        if (!lease.ok()) return lease.status();
        v1::ResourceUsage usage = task.usage;
        if (*lease) ChargeUsage(*job, task.kind, &usage, (*lease)->usage);
        s = tx.Exec("UPDATE leases SET state = ? WHERE lease_id = ?",
                    {int64_t{kLeaseReleased}, task.lease_id})
                .status();
        if (s.ok()) {
          s = tx.Exec("UPDATE tasks SET state = ?, lease_id = NULL, lease_deadline_us = 0, "
                      "not_before_us = 0, usage = ? WHERE task_id = ?",
                      {int64_t{kTaskQueued}, SqlBlob{usage.SerializeAsString()}, task.task_id})
                  .status();
        }
        if (s.ok()) {
          job->job.set_status_message(absl::StrCat(StageName(task.kind), BlockText(task),
                                                   ": waiting for a worker (worker ",
                                                   std::string(worker_id), " left)"));
          s = SchedulerLog(tx, task.job_id, v1::LOG_SEVERITY_WARNING, task.kind, task.task_id,
                           absl::StrCat("task ", task.task_id, " released: worker ",
                                        std::string(worker_id), " deregistered; requeued"),
                           now);
        }
      }
      if (s.ok()) s = SaveJob(tx, *job, now);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

// ---- Leasing ----

absl::StatusOr<std::optional<v1::Task>> SqlJobStore::LeaseTask(
    const v1::LeaseTaskRequest& request) {
  std::optional<v1::Task> leased;
  absl::Status outcome;
  // Locking mode: on PostgreSQL the candidate row is taken with FOR UPDATE
  // SKIP LOCKED (replicas lease different tasks without conflicting) and
  // starting a job of a tenant re-counts its running jobs under an advisory
  // lock; the job row is written with SaveJob's compare-and-set.
  absl::Status status = db_->TransactLocking([&](SqlTransaction& tx) -> absl::Status {
    leased.reset();
    outcome = absl::OkStatus();
    const absl::Time now = options_.clock();
    absl::StatusOr<std::vector<SqlRow>> w = tx.Query(
        "SELECT gpus, gpu_memory, kinds, state, last_seen_us FROM workers WHERE worker_id = ?",
        {request.worker_id()});
    if (!w.ok()) return w.status();
    const std::string unknown = absl::StrCat("worker_id: unknown or lapsed worker \"",
                                             request.worker_id(), "\"; register again");
    if (w->empty() || (*w)[0].Int(3) != kWorkerActive) return absl::NotFoundError(unknown);
    const SqlRow& worker = (*w)[0];
    if (worker.Int(4) < ToMicros(now - 3 * options_.heartbeat_interval)) {
      // Lapsed but not swept yet: record it (and expire its leases) first.
      SweepResult ignored;
      absl::Status s = ExpireOverdueLeases(tx, now, &ignored);
      if (!s.ok()) return s;
      outcome = absl::NotFoundError(unknown);
      return absl::OkStatus();
    }
    const int64_t gpus = worker.Int(0);
    if (request.free_gpus() < 0 || request.free_gpus() > gpus) {
      return absl::InvalidArgumentError(
          absl::StrCat("free_gpus: must be in [0, ", gpus, "] (the GPUs registered), got ",
                       request.free_gpus()));
    }
    if (request.free_memory_bytes() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "free_memory_bytes: must not be negative, got ", request.free_memory_bytes()));
    }
    // Idle polls write nothing (a write costs an fsync): last_seen moves
    // only when a quarter of the heartbeat interval has passed.
    absl::Status s = tx.Exec("UPDATE workers SET last_seen_us = ? WHERE worker_id = ? AND "
                             "last_seen_us < ?",
                             {ToMicros(now), request.worker_id(),
                              ToMicros(now - options_.heartbeat_interval / 4)})
                         .status();
    if (!s.ok()) return s;
    SweepResult swept;
    if (s = ExpireOverdueLeases(tx, now, &swept); !s.ok()) return s;

    const int64_t registered = worker.Int(2);
    std::vector<std::string> kinds;
    for (int k = v1::STAGE_ATTENTION_TRANSFER; k <= v1::STAGE_PUBLISH; ++k) {
      bool wanted = request.kinds().empty() ||
                    std::find(request.kinds().begin(), request.kinds().end(), k) !=
                        request.kinds().end();
      bool able = registered == 0 || (registered & (int64_t{1} << k));
      if (wanted && able) kinds.push_back(absl::StrCat(k));
    }
    if (kinds.empty()) return absl::OkStatus();
    const int64_t limit = options_.max_running_jobs_per_tenant;
    absl::StatusOr<std::vector<SqlRow>> cand = tx.Query(
        absl::StrCat(
            "SELECT t.task_id FROM tasks t JOIN jobs j ON j.job_id = t.job_id "
            "WHERE t.state = ? AND t.not_before_us <= ? AND t.kind IN (",
            absl::StrJoin(kinds, ", "),
            ") AND t.gpus <= ? AND t.min_gpu_memory <= ? AND j.state IN (?, ?) "
            // Earlier stages done.
            "AND NOT EXISTS (SELECT 1 FROM tasks d WHERE d.job_id = t.job_id AND d.kind < t.kind "
            "AND d.state <> ?) "
            // Starting a queued job respects the tenant's running-job limit.
            "AND (j.state = ? OR ? = 0 OR (SELECT COUNT(*) FROM jobs r WHERE r.tenant = t.tenant "
            "AND r.state = ?) < ?) "
            "AND (j.max_parallel = 0 OR (SELECT COUNT(*) FROM tasks p WHERE p.job_id = t.job_id "
            "AND p.state = ?) < j.max_parallel) "
            "ORDER BY t.priority DESC, t.job_create_us, t.job_id, t.ordinal LIMIT 1",
            tx.dialect() == SqlDialect::kPostgres ? " FOR UPDATE OF t SKIP LOCKED" : ""),
        {int64_t{kTaskQueued}, ToMicros(now), int64_t{request.free_gpus()},
         gpus > 0 ? worker.Int(1) : int64_t{0}, int64_t{v1::JOB_STATE_QUEUED},
         int64_t{v1::JOB_STATE_RUNNING}, int64_t{kTaskSucceeded}, int64_t{v1::JOB_STATE_RUNNING},
         limit, int64_t{v1::JOB_STATE_RUNNING}, limit, int64_t{kTaskLeased}});
    if (!cand.ok()) return cand.status();
    if (cand->empty()) return absl::OkStatus();

    absl::StatusOr<std::optional<TaskRow>> loaded = LoadTask(tx, (*cand)[0].Str(0));
    if (!loaded.ok()) return loaded.status();
    const TaskRow& task = **loaded;
    if (limit > 0 && tx.dialect() == SqlDialect::kPostgres) {
      // Another replica may be starting a job of this tenant right now: the
      // count in the candidate query may be stale. Recount under a lock.
      absl::StatusOr<std::vector<SqlRow>> state = tx.Query(
          "SELECT state FROM jobs WHERE job_id = ?", {task.job_id});
      if (!state.ok()) return state.status();
      if (!state->empty() && (*state)[0].Int(0) == v1::JOB_STATE_QUEUED) {
        s = tx.Query("SELECT pg_advisory_xact_lock(hashtext(?))",
                     {absl::StrCat("linearize.start:", task.tenant)})
                .status();
        if (!s.ok()) return s;
        absl::StatusOr<std::vector<SqlRow>> running = tx.Query(
            "SELECT COUNT(*) FROM jobs WHERE tenant = ? AND state = ?",
            {task.tenant, int64_t{v1::JOB_STATE_RUNNING}});
        if (!running.ok()) return running.status();
        if ((*running)[0].Int(0) >= limit) {
          return absl::AbortedError("tenant reached its running-job limit concurrently");
        }
      }
    }
    const int64_t token = task.fencing_token + 1;
    const std::string lease_id = NewId("lease");
    const absl::Time deadline = now + options_.lease_duration;
    const std::string output_path =
        absl::StrCat("jobs/", task.job_id, "/", task.task_id, "/lease-", token);
    absl::StatusOr<int64_t> changed = tx.Exec(
        "UPDATE tasks SET state = ?, fencing_token = ?, lease_id = ?, lease_deadline_us = ? "
        "WHERE task_id = ? AND state = ?",
        {int64_t{kTaskLeased}, token, lease_id, ToMicros(deadline), task.task_id,
         int64_t{kTaskQueued}});
    if (!changed.ok()) return changed.status();
    if (*changed == 0) return absl::AbortedError("task leased concurrently");
    s = tx.Exec("INSERT INTO leases (lease_id, task_id, worker_id, fencing_token, attempt, state, "
                "output_path, grant_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                {lease_id, task.task_id, request.worker_id(), token, task.attempt,
                 int64_t{kLeaseActive}, output_path, ToMicros(now)})
            .status();
    if (!s.ok()) return s;

    absl::StatusOr<JobRow> job = LoadJob(tx, task.job_id);
    if (!job.ok()) return job.status();
    if (job->job.state() == v1::JOB_STATE_QUEUED) {
      SetJobState(*job, v1::JOB_STATE_RUNNING, now);
      google::protobuf::Duration wall = job->job.spec().budget().max_wall_time();
      absl::Duration budget = absl::Seconds(wall.seconds()) + absl::Nanoseconds(wall.nanos());
      if (budget <= absl::ZeroDuration()) budget = absl::Hours(24);
      job->deadline_us = ToMicros(now + budget);
    }
    if (task.kind != job->job.stage()) {
      job->job.set_stage(task.kind);
      job->job.clear_progress();
    }
    SetStageState(*job, task.kind, v1::STAGE_STATE_RUNNING, now);
    if (task.kind == v1::STAGE_EVALUATE && job->job.evaluation_report_id().empty()) {
      job->job.set_evaluation_report_id(absl::StrCat("report-", task.job_id));
    }
    job->job.set_status_message(absl::StrCat(
        StageName(task.kind), BlockText(task), ": running on worker ", request.worker_id(),
        task.attempt > 1 ? absl::StrCat(" (attempt ", task.attempt, ")") : ""));
    if (s = SaveJob(tx, *job, now); !s.ok()) return s;
    s = SchedulerLog(tx, task.job_id, v1::LOG_SEVERITY_INFO, task.kind, task.task_id,
                     absl::StrCat("task ", task.task_id, " (", StageName(task.kind),
                                  BlockText(task), ") leased to worker ", request.worker_id(),
                                  ", attempt ", task.attempt, ", fencing token ", token,
                                  task.checkpoint_path.empty()
                                      ? std::string()
                                      : absl::StrCat(", resuming from ", task.checkpoint_path)),
                     now);
    if (!s.ok()) return s;

    v1::Task out;
    out.set_task_id(task.task_id);
    out.set_job_id(task.job_id);
    out.set_tenant(task.tenant);
    out.set_kind(task.kind);
    out.set_attempt(static_cast<int32_t>(task.attempt));
    if (task.layer_first >= 0) {
      out.mutable_layer_block()->set_first_layer(static_cast<int32_t>(task.layer_first));
      out.mutable_layer_block()->set_num_layers(static_cast<int32_t>(task.layer_count));
    }
    *out.mutable_spec() = job->job.spec();
    out.set_teacher_path(job->teacher_path);
    // FINETUNE builds on the attention-transfer outputs; EVALUATE and
    // PUBLISH on those and the FINETUNE output.
    absl::StatusOr<std::vector<SqlRow>> inputs = tx.Query(
        "SELECT result_path FROM tasks WHERE job_id = ? AND kind < ? AND kind IN (?, ?) "
        "AND state = ? ORDER BY kind, ordinal",
        {task.job_id, int64_t{task.kind}, int64_t{v1::STAGE_ATTENTION_TRANSFER},
         int64_t{v1::STAGE_FINETUNE}, int64_t{kTaskSucceeded}});
    if (!inputs.ok()) return inputs.status();
    for (const SqlRow& r : *inputs) out.add_input_paths(r.Str(0));
    out.set_output_path(output_path);
    out.set_resume_checkpoint_path(task.checkpoint_path);
    out.set_lease_id(lease_id);
    out.set_fencing_token(token);
    SetTimestamp(out.mutable_lease_deadline(), deadline);
    out.set_gpus(static_cast<int32_t>(task.gpus));
    if (task.kind == v1::STAGE_EVALUATE) {
      out.set_evaluation_report_id(job->job.evaluation_report_id());
    }
    leased = std::move(out);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!outcome.ok()) return outcome;
  return leased;
}

// ---- Sweep ----

absl::StatusOr<SweepResult> SqlJobStore::Sweep() {
  SweepResult result;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    result = SweepResult();
    const absl::Time now = options_.clock();
    if (absl::Status s = ExpireOverdueLeases(tx, now, &result); !s.ok()) return s;
    absl::StatusOr<std::vector<SqlRow>> over = tx.Query(
        "SELECT job_id FROM jobs WHERE state = ? AND deadline_us > 0 AND deadline_us < ?",
        {int64_t{v1::JOB_STATE_RUNNING}, ToMicros(now)});
    if (!over.ok()) return over.status();
    for (const SqlRow& r : *over) {
      absl::StatusOr<JobRow> job = LoadJob(tx, r.Str(0));
      if (!job.ok()) return job.status();
      const google::protobuf::Duration& wall = job->job.spec().budget().max_wall_time();
      absl::Status s = FailJob(
          tx, *job, v1::FAILURE_CODE_BUDGET_EXCEEDED,
          absl::StrCat("wall-time budget exhausted: RUNNING for longer than ",
                       wall.seconds() > 0 ? absl::StrCat(wall.seconds(), " s")
                                          : std::string("24 h"),
                       " (spec.budget.max_wall_time)"),
          v1::STAGE_UNSPECIFIED, "", 0, now);
      if (s.ok()) s = SaveJob(tx, *job, now);
      if (!s.ok()) return s;
      ++result.failed_jobs;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

}  // namespace linearize::scheduler
