// SqlJobStore: what workers report about a leased task -- heartbeats
// (progress, logs, checkpoints, budgets), completion and failure -- each
// checked against the lease and its fencing token first.
#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/scheduler/sql_job_store.h"
#include "services/scheduler/sql_task_util.h"

namespace linearize::scheduler {

using namespace internal;  // NOLINT: the store's own helpers

// ---- Heartbeat ----

absl::StatusOr<v1::HeartbeatResponse> SqlJobStore::Heartbeat(const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    response.Clear();
    response.set_action(v1::HEARTBEAT_ACTION_LEASE_LOST);
    const absl::Time now = options_.clock();
    absl::StatusOr<std::optional<LeaseRow>> lease = LoadLease(tx, request.lease_id());
    if (!lease.ok()) return lease.status();
    if (!*lease || (*lease)->fencing_token != request.fencing_token() ||
        (*lease)->state != kLeaseActive) {
      return absl::OkStatus();
    }
    if (!request.checkpoint_path().empty() &&
        !IsInside(request.checkpoint_path(), (*lease)->output_path)) {
      return PathOutside("checkpoint_path", request.checkpoint_path(), (*lease)->output_path);
    }
    absl::StatusOr<std::optional<TaskRow>> task = LoadTask(tx, (*lease)->task_id);
    if (!task.ok()) return task.status();
    if (!*task || (*task)->lease_id != request.lease_id() || (*task)->state != kTaskLeased) {
      return absl::OkStatus();
    }
    absl::Status s = tx.Exec("UPDATE workers SET last_seen_us = ? WHERE worker_id = ? AND state = ?",
                             {ToMicros(now), (*lease)->worker_id, int64_t{kWorkerActive}})
                         .status();
    if (!s.ok()) return s;
    if ((*task)->lease_deadline_us < ToMicros(now)) {
      // Expired but not swept yet: requeue it now; this worker must stop.
      absl::StatusOr<RetryDecision> d = EndAttempt(
          tx, **task, kLeaseExpired, true, v1::FAILURE_CODE_RETRIES_EXHAUSTED,
          absl::StrCat("lease ", request.lease_id(), " of worker ", (*lease)->worker_id,
                       " expired before its heartbeat arrived"),
          "", nullptr, now);
      return d.status();
    }
    absl::StatusOr<JobRow> job = LoadJob(tx, (*task)->job_id);
    if (!job.ok()) return job.status();
    if (IsTerminal(job->job.state())) {
      response.set_action(v1::HEARTBEAT_ACTION_CANCEL);
      if (s = ReleaseForEndedJob(tx, **task, *job, now); !s.ok()) return s;
      return SaveJob(tx, *job, now);
    }
    const v1::Stage kind = (*task)->kind;
    v1::StageProgress progress = request.progress();
    if (request.has_progress()) {
      progress.set_stage(kind);
      if ((*task)->layer_first >= 0) {
        progress.mutable_layer_block()->set_first_layer(static_cast<int32_t>((*task)->layer_first));
        progress.mutable_layer_block()->set_num_layers(static_cast<int32_t>((*task)->layer_count));
      } else {
        progress.clear_layer_block();
      }
      if (!progress.has_update_time()) SetTimestamp(progress.mutable_update_time(), now);
    }
    const absl::Time deadline = now + options_.lease_duration;
    s = tx.Exec(request.has_progress()
                    ? "UPDATE tasks SET lease_deadline_us = ?, checkpoint_path = ?, progress = ? "
                      "WHERE task_id = ?"
                    : "UPDATE tasks SET lease_deadline_us = ?, checkpoint_path = ? "
                      "WHERE task_id = ?",
                request.has_progress()
                    ? std::vector<SqlValue>{ToMicros(deadline),
                                            request.checkpoint_path().empty()
                                                ? (*task)->checkpoint_path
                                                : request.checkpoint_path(),
                                            SqlBlob{progress.SerializeAsString()},
                                            (*task)->task_id}
                    : std::vector<SqlValue>{ToMicros(deadline),
                                            request.checkpoint_path().empty()
                                                ? (*task)->checkpoint_path
                                                : request.checkpoint_path(),
                                            (*task)->task_id})
            .status();
    if (!s.ok()) return s;
    if (request.has_usage()) {
      s = tx.Exec("UPDATE leases SET usage = ? WHERE lease_id = ?",
                  {SqlBlob{request.usage().SerializeAsString()}, request.lease_id()})
              .status();
      if (!s.ok()) return s;
    }
    for (const v1::LogLine& in : request.logs()) {
      v1::LogLine line = in;
      line.set_task_id((*task)->task_id);
      if (line.stage() == v1::STAGE_UNSPECIFIED) line.set_stage(kind);
      if (!line.has_time()) SetTimestamp(line.mutable_time(), now);
      if (line.message().size() > 4096) {
        // Cut at a UTF-8 character boundary.
        size_t cut = 4093;
        while (cut > 0 && (static_cast<unsigned char>(line.message()[cut]) & 0xc0) == 0x80) --cut;
        line.set_message(line.message().substr(0, cut) + "...");
      }
      if (s = AppendLog(tx, (*task)->job_id, std::move(line)); !s.ok()) return s;
    }
    bool job_changed = false;
    if (request.has_progress()) {
      // The job's progress aggregates the stage's running tasks.
      absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
          "SELECT progress FROM tasks WHERE job_id = ? AND kind = ? AND state = ? "
          "AND progress IS NOT NULL",
          {(*task)->job_id, int64_t{kind}, int64_t{kTaskLeased}});
      if (!rows.ok()) return rows.status();
      v1::StageProgress total;
      total.set_stage(kind);
      double loss = 0, val_loss = 0, lr = 0;
      int n_loss = 0, n_val = 0, n = 0;
      int64_t eta_us = -1;
      for (const SqlRow& r : *rows) {
        v1::StageProgress p;
        if (!p.ParseFromString(r.Str(0))) continue;
        ++n;
        total.set_step(total.step() + p.step());
        total.set_total_steps(total.total_steps() + p.total_steps());
        total.set_tokens_processed(total.tokens_processed() + p.tokens_processed());
        total.set_token_budget(total.token_budget() + p.token_budget());
        total.set_tokens_per_second(total.tokens_per_second() + p.tokens_per_second());
        if (p.has_loss()) loss += p.loss(), ++n_loss;
        if (p.has_validation_loss()) val_loss += p.validation_loss(), ++n_val;
        lr += p.learning_rate();
        if (p.has_eta()) {
          eta_us = std::max<int64_t>(eta_us, p.eta().seconds() * 1000000 + p.eta().nanos() / 1000);
        }
      }
      if (n_loss > 0) total.set_loss(loss / n_loss);
      if (n_val > 0) total.set_validation_loss(val_loss / n_val);
      if (n > 0) total.set_learning_rate(lr / n);
      if (eta_us >= 0) {
        total.mutable_eta()->set_seconds(eta_us / 1000000);
        total.mutable_eta()->set_nanos(static_cast<int32_t>(eta_us % 1000000) * 1000);
      }
      SetTimestamp(total.mutable_update_time(), now);
      *job->job.mutable_progress() = total;
      v1::JobEvent e;
      e.set_sequence(job->seq);
      *e.mutable_progress() = progress;
      job->pending.push_back(std::move(e));
      job_changed = true;
    }
    // Token budget: finished attempts plus what the live ones report.
    const int64_t max_tokens = job->job.spec().budget().max_tokens();
    if (max_tokens > 0) {
      absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
          "SELECT usage FROM leases WHERE state = ? AND usage IS NOT NULL AND task_id IN "
          "(SELECT task_id FROM tasks WHERE job_id = ?)",
          {int64_t{kLeaseActive}, (*task)->job_id});
      if (!rows.ok()) return rows.status();
      int64_t tokens = job->job.usage().tokens_processed();
      for (const SqlRow& r : *rows) {
        v1::ResourceUsage u;
        if (u.ParseFromString(r.Str(0))) tokens += u.tokens_processed();
      }
      if (tokens > max_tokens) {
        s = FailJob(tx, *job, v1::FAILURE_CODE_BUDGET_EXCEEDED,
                    absl::StrCat("token budget exhausted: ", tokens,
                                 " tokens processed, spec.budget.max_tokens is ", max_tokens),
                    kind, (*task)->task_id, static_cast<int>((*task)->attempt), now);
        if (!s.ok()) return s;
        absl::StatusOr<std::optional<TaskRow>> fresh = LoadTask(tx, (*task)->task_id);
        if (!fresh.ok()) return fresh.status();
        if (s = ReleaseForEndedJob(tx, **fresh, *job, now); !s.ok()) return s;
        response.set_action(v1::HEARTBEAT_ACTION_CANCEL);
        return SaveJob(tx, *job, now);
      }
    }
    if (job_changed) {
      if (s = SaveJob(tx, *job, now); !s.ok()) return s;
    }
    response.set_action(v1::HEARTBEAT_ACTION_CONTINUE);
    SetTimestamp(response.mutable_lease_deadline(), deadline);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

// ---- Completion and failure ----

absl::Status SqlJobStore::CompleteTask(const v1::CompleteTaskRequest& request) {
  absl::Status outcome;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    outcome = absl::OkStatus();
    const absl::Time now = options_.clock();
    absl::StatusOr<std::optional<LeaseRow>> lease = LoadLease(tx, request.lease_id());
    if (!lease.ok()) return lease.status();
    if (!*lease) {
      return absl::NotFoundError(
          absl::StrCat("lease_id: unknown lease \"", request.lease_id(), "\""));
    }
    if ((*lease)->fencing_token != request.fencing_token()) {
      return LeaseLostOutcome(absl::StrCat(
          "fencing_token: ", request.fencing_token(), " is not the token of lease ",
          request.lease_id(), "; the task was leased again: discard this attempt's results"));
    }
    if ((*lease)->state == kLeaseCompleted) return absl::OkStatus();  // a repeat
    if ((*lease)->state != kLeaseActive) {
      return LeaseLostOutcome(absl::StrCat(
          "lease_id: lease ", request.lease_id(),
          " has ended (expired, released or failed); another worker may be running the task: "
          "discard this attempt's results"));
    }
    absl::StatusOr<std::optional<TaskRow>> task = LoadTask(tx, (*lease)->task_id);
    if (!task.ok()) return task.status();
    if (!*task || (*task)->lease_id != request.lease_id() || (*task)->state != kTaskLeased) {
      return LeaseLostOutcome(absl::StrCat("lease_id: lease ", request.lease_id(),
                                           " was superseded; discard this attempt's results"));
    }
    if ((*task)->lease_deadline_us < ToMicros(now)) {
      absl::StatusOr<RetryDecision> d = EndAttempt(
          tx, **task, kLeaseExpired, true, v1::FAILURE_CODE_RETRIES_EXHAUSTED,
          absl::StrCat("lease ", request.lease_id(), " expired before the task completed"), "",
          nullptr, now);
      if (!d.ok()) return d.status();
      outcome = LeaseLostOutcome(absl::StrCat(
          "lease_id: lease ", request.lease_id(),
          " expired before this call; the task was requeued: discard this attempt's results"));
      return absl::OkStatus();
    }
    absl::StatusOr<JobRow> job = LoadJob(tx, (*task)->job_id);
    if (!job.ok()) return job.status();
    if (IsTerminal(job->job.state())) {
      absl::Status s = ReleaseForEndedJob(tx, **task, *job, now);
      if (s.ok()) s = SaveJob(tx, *job, now);
      if (!s.ok()) return s;
      outcome = absl::FailedPreconditionError(
          absl::StrCat("job ", job->job.job_id(), " is ",
                       v1::JobState_Name(job->job.state()).substr(10),
                       "; the task's outputs are ignored"));
      return absl::OkStatus();
    }

    // The outputs.
    const v1::TaskOutputs& out = request.outputs();
    const std::string& dir = (*lease)->output_path;
    const v1::Stage kind = (*task)->kind;
    if (!request.has_outputs()) return absl::InvalidArgumentError("outputs: required");
    if (out.output_path().empty()) {
      return absl::InvalidArgumentError("outputs.output_path: required");
    }
    if (!IsInside(out.output_path(), dir)) {
      return PathOutside("outputs.output_path", out.output_path(), dir);
    }
    if (kind == v1::STAGE_EVALUATE) {
      if (out.evaluation_report_id() != job->job.evaluation_report_id()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "outputs.evaluation_report_id: must be the task's evaluation_report_id \"",
            job->job.evaluation_report_id(), "\", got \"", out.evaluation_report_id(), "\""));
      }
    } else if (!out.evaluation_report_id().empty()) {
      return absl::InvalidArgumentError(
          "outputs.evaluation_report_id: only EVALUATE tasks produce a report");
    }
    if (kind == v1::STAGE_PUBLISH) {
      if (out.artifact_path().empty()) {
        return absl::InvalidArgumentError(
            "outputs.artifact_path: required for a PUBLISH task");
      }
      if (!IsInside(out.artifact_path(), dir)) {
        return PathOutside("outputs.artifact_path", out.artifact_path(), dir);
      }
    } else if (!out.artifact_path().empty()) {
      return absl::InvalidArgumentError(
          "outputs.artifact_path: only PUBLISH tasks produce an artifact");
    }

    v1::ResourceUsage usage = (*task)->usage;
    const v1::ResourceUsage attempt = request.has_usage() ? request.usage() : (*lease)->usage;
    ChargeUsage(*job, kind, &usage, attempt);
    absl::Status s = tx.Exec("UPDATE leases SET state = ?, usage = ? WHERE lease_id = ?",
                             {int64_t{kLeaseCompleted}, SqlBlob{attempt.SerializeAsString()},
                              request.lease_id()})
                         .status();
    if (!s.ok()) return s;
    v1::StageProgress final_progress = out.final_progress();
    final_progress.set_stage(kind);
    s = tx.Exec("UPDATE tasks SET state = ?, lease_id = NULL, lease_deadline_us = 0, "
                "result_path = ?, progress = ?, usage = ? WHERE task_id = ?",
                {int64_t{kTaskSucceeded}, out.output_path(),
                 SqlBlob{final_progress.SerializeAsString()}, SqlBlob{usage.SerializeAsString()},
                 (*task)->task_id})
            .status();
    if (!s.ok()) return s;

    // The stage: count, mean final loss, end.
    absl::StatusOr<std::vector<SqlRow>> done = tx.Query(
        "SELECT progress FROM tasks WHERE job_id = ? AND kind = ? AND state = ?",
        {(*task)->job_id, int64_t{kind}, int64_t{kTaskSucceeded}});
    if (!done.ok()) return done.status();
    v1::StageSummary* stage = FindStage(job->job, kind);
    double loss_sum = 0;
    int n_loss = 0;
    for (const SqlRow& r : *done) {
      v1::StageProgress p;
      if (p.ParseFromString(r.Str(0)) && p.has_loss()) loss_sum += p.loss(), ++n_loss;
    }
    if (stage != nullptr) {
      stage->set_tasks_succeeded(static_cast<int32_t>(done->size()));
      if (n_loss > 0) stage->set_final_loss(loss_sum / n_loss);
      if (stage->tasks_succeeded() >= stage->tasks_total()) {
        SetStageState(*job, kind, v1::STAGE_STATE_SUCCEEDED, now);
      }
    }
    std::vector<std::string> metrics;
    std::vector<std::pair<std::string, double>> sorted(out.metrics().begin(), out.metrics().end());
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [k, v] : sorted) metrics.push_back(absl::StrCat(k, "=", v));
    s = SchedulerLog(tx, (*task)->job_id, v1::LOG_SEVERITY_INFO, kind, (*task)->task_id,
                     absl::StrCat("task ", (*task)->task_id, " (", StageName(kind),
                                  BlockText(**task), ") succeeded: ", out.output_path(),
                                  metrics.empty() ? "" : " ", absl::StrJoin(metrics, " ")),
                     now);
    if (!s.ok()) return s;
    if (kind == v1::STAGE_PUBLISH) {
      job->job.set_artifact_path(out.artifact_path());
      job->job.set_model_name(job->job.spec().output_model_name());
      job->job.set_status_message(absl::StrCat("succeeded: published as ",
                                               job->job.model_name(), " at ", out.artifact_path()));
      SetJobState(*job, v1::JOB_STATE_SUCCEEDED, now);
    } else if (stage != nullptr && stage->state() == v1::STAGE_STATE_SUCCEEDED) {
      job->job.set_status_message(absl::StrCat(StageName(kind), " done; waiting for a worker"));
    }
    return SaveJob(tx, *job, now);
  });
  if (!status.ok()) return status;
  return outcome;
}

absl::StatusOr<v1::FailTaskResponse> SqlJobStore::FailTask(const v1::FailTaskRequest& request) {
  v1::FailTaskResponse response;
  absl::Status outcome;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    response.Clear();
    outcome = absl::OkStatus();
    const absl::Time now = options_.clock();
    absl::StatusOr<std::optional<LeaseRow>> lease = LoadLease(tx, request.lease_id());
    if (!lease.ok()) return lease.status();
    if (!*lease) {
      return absl::NotFoundError(
          absl::StrCat("lease_id: unknown lease \"", request.lease_id(), "\""));
    }
    if ((*lease)->fencing_token != request.fencing_token()) {
      return LeaseLostOutcome(absl::StrCat(
          "fencing_token: ", request.fencing_token(), " is not the token of lease ",
          request.lease_id(), "; the task was leased again"));
    }
    if ((*lease)->state != kLeaseActive) {
      return LeaseLostOutcome(absl::StrCat("lease_id: lease ", request.lease_id(),
                                           " has already ended"));
    }
    if (!request.checkpoint_path().empty() &&
        !IsInside(request.checkpoint_path(), (*lease)->output_path)) {
      return PathOutside("checkpoint_path", request.checkpoint_path(), (*lease)->output_path);
    }
    absl::StatusOr<std::optional<TaskRow>> task = LoadTask(tx, (*lease)->task_id);
    if (!task.ok()) return task.status();
    if (!*task || (*task)->lease_id != request.lease_id() || (*task)->state != kTaskLeased) {
      return LeaseLostOutcome(
          absl::StrCat("lease_id: lease ", request.lease_id(), " was superseded"));
    }
    if ((*task)->lease_deadline_us < ToMicros(now)) {
      absl::StatusOr<RetryDecision> d = EndAttempt(
          tx, **task, kLeaseExpired, true, v1::FAILURE_CODE_RETRIES_EXHAUSTED,
          absl::StrCat("lease ", request.lease_id(), " expired"), "", nullptr, now);
      if (!d.ok()) return d.status();
      outcome = LeaseLostOutcome(absl::StrCat("lease_id: lease ", request.lease_id(),
                                              " expired before this call; the task was requeued"));
      return absl::OkStatus();
    }
    absl::StatusOr<JobRow> job = LoadJob(tx, (*task)->job_id);
    if (!job.ok()) return job.status();
    if (IsTerminal(job->job.state())) {
      absl::Status s = ReleaseForEndedJob(tx, **task, *job, now);
      if (s.ok()) s = SaveJob(tx, *job, now);
      if (!s.ok()) return s;
      outcome = absl::FailedPreconditionError(absl::StrCat(
          "job ", job->job.job_id(), " is ", v1::JobState_Name(job->job.state()).substr(10)));
      return absl::OkStatus();
    }
    if (request.has_progress()) {
      v1::StageProgress p = request.progress();
      p.set_stage((*task)->kind);
      absl::Status s = tx.Exec("UPDATE tasks SET progress = ? WHERE task_id = ?",
                               {SqlBlob{p.SerializeAsString()}, (*task)->task_id})
                           .status();
      if (!s.ok()) return s;
    }
    const std::string reason = request.message().empty()
                                   ? v1::FailureCode_Name(request.code())
                                   : request.message();
    absl::StatusOr<RetryDecision> d = EndAttempt(
        tx, **task, kLeaseFailed, request.retryable(), request.code(), reason,
        request.checkpoint_path(), request.has_usage() ? &request.usage() : nullptr, now);
    if (!d.ok()) return d.status();
    response.set_will_retry(d->will_retry);
    if (d->will_retry) SetTimestamp(response.mutable_retry_time(), d->retry_time);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!outcome.ok()) return outcome;
  return response;
}

}  // namespace linearize::scheduler
