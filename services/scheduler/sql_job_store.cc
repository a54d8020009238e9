// SqlJobStore: jobs, their events and logs.
#include "services/scheduler/sql_job_store.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "services/scheduler/field_checks.h"
#include "services/scheduler/ids.h"
#include "services/scheduler/page_token.h"

namespace linearize::scheduler {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

void SetTimestamp(google::protobuf::Timestamp* ts, absl::Time t) {
  int64_t us = ToMicros(t);
  int64_t sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
  ts->set_seconds(sec);
  ts->set_nanos(static_cast<int32_t>((us - sec * 1000000) * 1000));
}

std::string SerializeDeterministic(const google::protobuf::Message& m) {
  std::string bytes;
  google::protobuf::io::StringOutputStream raw(&bytes);
  google::protobuf::io::CodedOutputStream out(&raw);
  out.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&out);
  out.Trim();
  return bytes;
}

const char* StageName(v1::Stage stage) {
  switch (stage) {
    case v1::STAGE_ATTENTION_TRANSFER: return "attention transfer";
    case v1::STAGE_FINETUNE: return "fine-tuning";
    case v1::STAGE_EVALUATE: return "evaluation";
    case v1::STAGE_PUBLISH: return "publishing";
    default: return "no stage";
  }
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

void AddUsage(v1::ResourceUsage* total, const v1::ResourceUsage& add) {
  total->set_gpu_seconds(total->gpu_seconds() + add.gpu_seconds());
  total->set_cpu_seconds(total->cpu_seconds() + add.cpu_seconds());
  int64_t nanos = total->wall_time().seconds() * 1000000000 + total->wall_time().nanos() +
                  add.wall_time().seconds() * 1000000000 + add.wall_time().nanos();
  total->mutable_wall_time()->set_seconds(nanos / 1000000000);
  total->mutable_wall_time()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  total->set_tokens_processed(total->tokens_processed() + add.tokens_processed());
  total->set_peak_gpu_memory_bytes(
      std::max(total->peak_gpu_memory_bytes(), add.peak_gpu_memory_bytes()));
  total->set_peak_host_memory_bytes(
      std::max(total->peak_host_memory_bytes(), add.peak_host_memory_bytes()));
}

namespace {

std::string JobStateName(v1::JobState s) { return v1::JobState_Name(s); }

absl::Status NoSuchJob(std::string_view job_id) {
  return absl::NotFoundError(absl::StrCat("job_id: no job \"", std::string(job_id), "\""));
}

// Microseconds at or after `ts` (filters compare whole microseconds).
int64_t CeilMicros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + (ts.nanos() + 999) / 1000;
}

}  // namespace

// ---- Row helpers ----

absl::StatusOr<SqlJobStore::JobRow> SqlJobStore::LoadJob(SqlTransaction& tx,
                                                         std::string_view job_id) {
  absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
      "SELECT job, version, seq, deadline_us, teacher_path FROM jobs WHERE job_id = ?",
      {std::string(job_id)});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return NoSuchJob(job_id);
  JobRow row;
  const SqlRow& r = (*rows)[0];
  if (!row.job.ParseFromString(r.Str(0))) {
    return absl::InternalError(absl::StrCat("job store: record of job ", std::string(job_id), " is corrupt"));
  }
  row.version = r.Int(1);
  row.seq = r.Int(2);
  row.deadline_us = r.Int(3);
  row.teacher_path = r.Str(4);
  return row;
}

absl::Status SqlJobStore::SaveJob(SqlTransaction& tx, JobRow& row, absl::Time now) {
  SetTimestamp(row.job.mutable_update_time(), now);
  absl::StatusOr<int64_t> changed = tx.Exec(
      "UPDATE jobs SET state = ?, update_us = ?, seq = ?, deadline_us = ?, job = ?, "
      "version = version + 1 WHERE job_id = ? AND version = ?",
      {int64_t{row.job.state()}, ToMicros(now), row.seq, row.deadline_us,
       SqlBlob{row.job.SerializeAsString()}, row.job.job_id(), row.version});
  if (!changed.ok()) return changed.status();
  if (*changed == 0) {
    // Compare-and-set lost: someone saved the job since we loaded it.
    return absl::AbortedError(absl::StrCat("job ", row.job.job_id(), " changed concurrently"));
  }
  ++row.version;
  for (v1::JobEvent& e : row.pending) {
    SetTimestamp(e.mutable_time(), now);
    if (e.has_state_change()) *e.mutable_state_change()->mutable_job() = row.job;
    absl::Status s = tx.Exec("INSERT INTO job_events (job_id, time_us, event) VALUES (?, ?, ?)",
                             {row.job.job_id(), ToMicros(now), SqlBlob{e.SerializeAsString()}})
                         .status();
    if (!s.ok()) return s;
  }
  row.pending.clear();
  return absl::OkStatus();
}

void SqlJobStore::SetJobState(JobRow& row, v1::JobState state, absl::Time now) {
  const v1::JobState previous = row.job.state();
  if (previous == state) return;
  row.job.set_state(state);
  if (state == v1::JOB_STATE_RUNNING && !row.job.has_start_time()) {
    SetTimestamp(row.job.mutable_start_time(), now);
  }
  if (IsTerminal(state)) {
    SetTimestamp(row.job.mutable_end_time(), now);
    row.job.clear_progress();
  }
  v1::JobEvent e;
  e.set_sequence(++row.seq);
  e.mutable_state_change()->set_previous_state(previous);
  e.mutable_state_change()->set_state(state);
  row.pending.push_back(std::move(e));
}

void SqlJobStore::SetStageState(JobRow& row, v1::Stage stage, v1::StageState state,
                                absl::Time now) {
  for (v1::StageSummary& s : *row.job.mutable_stages()) {
    if (s.stage() != stage) continue;
    if (s.state() == state) return;
    s.set_state(state);
    if (state == v1::STAGE_STATE_RUNNING && !s.has_start_time()) {
      SetTimestamp(s.mutable_start_time(), now);
    }
    if (state != v1::STAGE_STATE_RUNNING && state != v1::STAGE_STATE_PENDING) {
      SetTimestamp(s.mutable_end_time(), now);
    }
    v1::JobEvent e;
    e.set_sequence(++row.seq);
    *e.mutable_stage_change()->mutable_stage() = s;
    row.pending.push_back(std::move(e));
    return;
  }
}

absl::Status SqlJobStore::CancelQueuedTasks(SqlTransaction& tx, std::string_view job_id) {
  return tx.Exec("UPDATE tasks SET state = ? WHERE job_id = ? AND state = ?",
                 {int64_t{kTaskCancelled}, std::string(job_id), int64_t{kTaskQueued}})
      .status();
}

absl::Status SqlJobStore::FailJob(SqlTransaction& tx, JobRow& row, v1::FailureCode code,
                                  const std::string& message, v1::Stage stage,
                                  const std::string& task_id, int attempts, absl::Time now) {
  if (absl::Status s = CancelQueuedTasks(tx, row.job.job_id()); !s.ok()) return s;
  v1::JobFailure* f = row.job.mutable_failure();
  f->set_code(code == v1::FAILURE_CODE_UNSPECIFIED ? v1::FAILURE_CODE_INTERNAL : code);
  f->set_message(message);
  f->set_stage(stage);
  f->set_task_id(task_id);
  f->set_attempts(attempts);
  if (stage != v1::STAGE_UNSPECIFIED) SetStageState(row, stage, v1::STAGE_STATE_FAILED, now);
  for (const v1::StageSummary& s : row.job.stages()) {
    if (s.state() == v1::STAGE_STATE_RUNNING) {
      SetStageState(row, s.stage(), v1::STAGE_STATE_CANCELLED, now);
    }
  }
  row.job.set_status_message(absl::StrCat("failed: ", message));
  SetJobState(row, v1::JOB_STATE_FAILED, now);
  return SchedulerLog(tx, row.job.job_id(), v1::LOG_SEVERITY_ERROR, stage, task_id,
                      absl::StrCat("job failed (", v1::FailureCode_Name(f->code()), "): ", message),
                      now);
}

absl::Status SqlJobStore::AppendLog(SqlTransaction& tx, std::string_view job_id,
                                    v1::LogLine line) {
  return tx
      .Exec("INSERT INTO job_logs (job_id, severity, stage, task_id, line) VALUES (?, ?, ?, ?, ?)",
            {std::string(job_id), int64_t{line.severity()}, int64_t{line.stage()}, line.task_id(),
             SqlBlob{line.SerializeAsString()}})
      .status();
}

absl::Status SqlJobStore::SchedulerLog(SqlTransaction& tx, std::string_view job_id,
                                       v1::LogSeverity severity, v1::Stage stage,
                                       std::string_view task_id, std::string message,
                                       absl::Time now) {
  v1::LogLine line;
  SetTimestamp(line.mutable_time(), now);
  line.set_severity(severity);
  line.set_stage(stage);
  line.set_task_id(std::string(task_id));
  line.set_message(std::move(message));
  return AppendLog(tx, job_id, std::move(line));
}

// ---- Jobs ----

absl::StatusOr<CreateJobResult> SqlJobStore::CreateJob(const NewJob& in) {
  if (in.tasks.empty()) return absl::InternalError("job store: a job needs at least one task");
  CreateJobResult result;
  // Locking mode: a tenant's creations queue on an advisory lock, after which
  // every statement sees the others' commits (request ids, names, quota).
  absl::Status status = db_->TransactLocking([&](SqlTransaction& tx) -> absl::Status {
    const absl::Time now = options_.clock();
    const v1::Job& req = in.job;
    if (tx.dialect() == SqlDialect::kPostgres) {
      absl::Status s = tx.Query("SELECT pg_advisory_xact_lock(hashtext(?))",
                                {absl::StrCat("linearize.create:", req.tenant())})
                           .status();
      if (!s.ok()) return s;
    }
    if (!req.request_id().empty()) {
      absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
          "SELECT job_id, request, job FROM jobs WHERE tenant = ? AND request_id = ?",
          {req.tenant(), req.request_id()});
      if (!rows.ok()) return rows.status();
      if (!rows->empty()) {
        const SqlRow& r = (*rows)[0];
        if (r.Str(1) != in.request) {
          return absl::AlreadyExistsError(absl::StrCat(
              "request_id: \"", req.request_id(), "\" was already used for a different request "
              "(job ", r.Str(0), "); use a new request_id for a new job"));
        }
        result.created = false;
        if (!result.job.ParseFromString(r.Str(2))) {
          return absl::InternalError(absl::StrCat("job store: record of job ", r.Str(0),
                                                  " is corrupt"));
        }
        return absl::OkStatus();
      }
    }
    if (options_.max_queued_jobs_per_tenant > 0) {
      absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
          "SELECT COUNT(*) FROM jobs WHERE tenant = ? AND state = ?",
          {req.tenant(), int64_t{v1::JOB_STATE_QUEUED}});
      if (!rows.ok()) return rows.status();
      if ((*rows)[0].Int(0) >= options_.max_queued_jobs_per_tenant) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "tenant \"", req.tenant(), "\" already has ", (*rows)[0].Int(0),
            " queued jobs, the most allowed; wait for some to start or cancel them"));
      }
    }
    const std::string& model_name = req.spec().output_model_name();
    absl::StatusOr<std::vector<SqlRow>> taken = tx.Query(
        "SELECT job_id FROM jobs WHERE tenant = ? AND model_name = ? AND state IN (?, ?, ?) "
        "LIMIT 1",
        {req.tenant(), model_name, int64_t{v1::JOB_STATE_QUEUED}, int64_t{v1::JOB_STATE_RUNNING},
         int64_t{v1::JOB_STATE_SUCCEEDED}});
    if (!taken.ok()) return taken.status();
    if (!taken->empty()) {
      return absl::AlreadyExistsError(absl::StrCat("spec.output_model_name: \"", model_name,
                                                   "\" is already used by job ",
                                                   (*taken)[0].Str(0)));
    }

    JobRow row;
    row.job = req;
    row.job.set_state(v1::JOB_STATE_QUEUED);
    row.job.clear_stages();
    SetTimestamp(row.job.mutable_create_time(), now);
    SetTimestamp(row.job.mutable_update_time(), now);
    row.job.set_status_message("waiting for a worker");
    for (v1::Stage stage : {v1::STAGE_ATTENTION_TRANSFER, v1::STAGE_FINETUNE, v1::STAGE_EVALUATE,
                            v1::STAGE_PUBLISH}) {
      v1::StageSummary* s = row.job.add_stages();
      s->set_stage(stage);
      int n = static_cast<int>(std::count_if(in.tasks.begin(), in.tasks.end(),
                                             [&](const TaskPlan& t) { return t.kind == stage; }));
      s->set_tasks_total(n);
      s->set_state(n > 0 ? v1::STAGE_STATE_PENDING : v1::STAGE_STATE_SKIPPED);
      if (n == 0) SetTimestamp(s->mutable_end_time(), now);
    }
    row.seq = 1;
    v1::JobEvent created;
    created.set_sequence(1);
    created.mutable_state_change()->set_state(v1::JOB_STATE_QUEUED);
    row.pending.push_back(std::move(created));

    const int64_t create_us = ToMicros(now);
    SqlValue request_id = req.request_id().empty() ? SqlValue{} : SqlValue{req.request_id()};
    absl::Status s =
        tx.Exec("INSERT INTO jobs (job_id, tenant, request_id, request, state, priority, recipe, "
                "model_name, teacher_path, create_us, update_us, seq, max_parallel, deadline_us, "
                "version, job) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
                {req.job_id(), req.tenant(), request_id, SqlBlob{in.request},
                 int64_t{v1::JOB_STATE_QUEUED}, int64_t{req.priority()},
                 int64_t{req.spec().recipe().kind()}, model_name, in.teacher_path, create_us,
                 create_us, row.seq, int64_t{req.spec().budget().max_parallel_tasks()},
                 SqlBlob{row.job.SerializeAsString()}})
            .status();
    if (!s.ok()) return s;
    for (const auto& [key, value] : req.labels()) {
      s = tx.Exec("INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)",
                  {req.job_id(), key, value})
              .status();
      if (!s.ok()) return s;
    }
    for (size_t i = 0; i < in.tasks.size(); ++i) {
      const TaskPlan& t = in.tasks[i];
      s = tx.Exec(
                "INSERT INTO tasks (task_id, job_id, tenant, ordinal, kind, state, priority, "
                "job_create_us, gpus, min_gpu_memory, layer_first, layer_count, attempt, "
                "fencing_token, lease_id, lease_deadline_us, not_before_us, checkpoint_path, "
                "result_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, NULL, 0, 0, '', '')",
                {NewId("task"), req.job_id(), req.tenant(), static_cast<int64_t>(i),
                 int64_t{t.kind}, int64_t{kTaskQueued}, int64_t{req.priority()}, create_us,
                 int64_t{t.gpus}, t.min_gpu_memory_bytes,
                 int64_t{t.layer_block ? t.layer_block->first_layer() : -1},
                 int64_t{t.layer_block ? t.layer_block->num_layers() : 0}})
              .status();
      if (!s.ok()) return s;
    }
    // SaveJob writes the creation event (and bumps the version once).
    if (s = SaveJob(tx, row, now); !s.ok()) return s;
    s = SchedulerLog(tx, req.job_id(), v1::LOG_SEVERITY_INFO, v1::STAGE_UNSPECIFIED, "",
                     absl::StrCat("submitted: ", v1::RecipeKind_Name(req.spec().recipe().kind()),
                                  " conversion of ", in.teacher_path, ", ", in.tasks.size(),
                                  " tasks"),
                     now);
    if (!s.ok()) return s;
    result.job = row.job;
    result.created = true;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<v1::Job> SqlJobStore::GetJob(std::string_view tenant, std::string_view job_id) {
  v1::Job job;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
        "SELECT job FROM jobs WHERE job_id = ? AND tenant = ?",
        {std::string(job_id), std::string(tenant)});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return NoSuchJob(job_id);
    if (!job.ParseFromString((*rows)[0].Str(0))) {
      return absl::InternalError(absl::StrCat("job store: record of job ", std::string(job_id), " is corrupt"));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return job;
}

absl::StatusOr<v1::ListJobsResponse> SqlJobStore::ListJobs(std::string_view tenant,
                                                           const v1::ListJobsRequest& request) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must not be negative, got ", request.page_size()));
  }
  const int page_size = request.page_size() == 0 ? 50 : std::min(request.page_size(), 1000);
  std::string sql = "SELECT job, create_us, job_id FROM jobs WHERE tenant = ?";
  std::vector<SqlValue> params = {std::string(tenant)};
  if (request.states_size() > 0) {
    std::vector<std::string> marks;
    for (int i = 0; i < request.states_size(); ++i) {
      int s = request.states(i);
      if (s == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(s)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "states[", i, "]: ", s == 0 ? "JOB_STATE_UNSPECIFIED is not a state to filter on"
                                        : absl::StrCat("unknown job state ", s)));
      }
      marks.push_back("?");
      params.push_back(int64_t{s});
    }
    absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(marks, ", "), ")");
  }
  if (request.recipes_size() > 0) {
    std::vector<std::string> marks;
    for (int i = 0; i < request.recipes_size(); ++i) {
      int r = request.recipes(i);
      if (r == v1::RECIPE_KIND_UNSPECIFIED || !v1::RecipeKind_IsValid(r)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "recipes[", i, "]: ", r == 0 ? "RECIPE_KIND_UNSPECIFIED is not a recipe to filter on"
                                         : absl::StrCat("unknown recipe ", r)));
      }
      marks.push_back("?");
      params.push_back(int64_t{r});
    }
    absl::StrAppend(&sql, " AND recipe IN (", absl::StrJoin(marks, ", "), ")");
  }
  if (absl::Status s = CheckLabels(request.labels(), "labels"); !s.ok()) return s;
  std::vector<std::pair<std::string, std::string>> labels(request.labels().begin(),
                                                          request.labels().end());
  std::sort(labels.begin(), labels.end());
  for (const auto& [key, value] : labels) {
    sql += " AND EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = jobs.job_id AND l.key = ? "
           "AND l.value = ?)";
    params.push_back(key);
    params.push_back(value);
  }
  if (request.has_create_time()) {
    const v1::TimeRange& range = request.create_time();
    if (range.has_start_time()) {
      if (absl::Status s = CheckTimestamp(range.start_time(), "create_time.start_time"); !s.ok()) {
        return s;
      }
      sql += " AND create_us >= ?";
      params.push_back(CeilMicros(range.start_time()));
    }
    if (range.has_end_time()) {
      if (absl::Status s = CheckTimestamp(range.end_time(), "create_time.end_time"); !s.ok()) {
        return s;
      }
      if (range.has_start_time() &&
          (range.end_time().seconds() < range.start_time().seconds() ||
           (range.end_time().seconds() == range.start_time().seconds() &&
            range.end_time().nanos() < range.start_time().nanos()))) {
        return absl::InvalidArgumentError("create_time.end_time: is before create_time.start_time");
      }
      sql += " AND create_us < ?";
      params.push_back(CeilMicros(range.end_time()));
    }
  }
  v1::ListJobsRequest filters = request;
  filters.clear_page_size();
  filters.clear_page_token();
  const std::string fingerprint = FilterFingerprint(filters);
  if (!request.page_token().empty()) {
    absl::StatusOr<std::vector<std::string>> pos =
        DecodePageToken(request.page_token(), "jobs", fingerprint, 2);
    if (!pos.ok()) return pos.status();
    int64_t after_us = 0;
    if (!absl::SimpleAtoi((*pos)[0], &after_us)) {
      return absl::InvalidArgumentError("page_token: malformed; pass the next_page_token of the "
                                        "previous response unchanged");
    }
    sql += " AND (create_us < ? OR (create_us = ? AND job_id > ?))";
    params.push_back(after_us);
    params.push_back(after_us);
    params.push_back((*pos)[1]);
  }
  sql += " ORDER BY create_us DESC, job_id ASC LIMIT ?";
  params.push_back(int64_t{page_size + 1});

  v1::ListJobsResponse response;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    response.Clear();
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(sql, params);
    if (!rows.ok()) return rows.status();
    const size_t n = std::min(rows->size(), static_cast<size_t>(page_size));
    for (size_t i = 0; i < n; ++i) {
      if (!response.add_jobs()->ParseFromString((*rows)[i].Str(0))) {
        return absl::InternalError("job store: a job record is corrupt");
      }
    }
    if (rows->size() > n) {
      response.set_next_page_token(EncodePageToken(
          "jobs", fingerprint, {absl::StrCat((*rows)[n - 1].Int(1)), (*rows)[n - 1].Str(2)}));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::Job> SqlJobStore::CancelJob(std::string_view tenant, std::string_view job_id,
                                               std::string_view reason) {
  v1::Job result;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    const absl::Time now = options_.clock();
    absl::StatusOr<JobRow> row = LoadJob(tx, job_id);
    if (!row.ok()) return row.status();
    if (row->job.tenant() != tenant) return NoSuchJob(job_id);
    const v1::JobState state = row->job.state();
    if (state == v1::JOB_STATE_CANCELLED) {
      result = row->job;
      return absl::OkStatus();
    }
    if (state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED) {
      return absl::FailedPreconditionError(
          absl::StrCat("job_id: job ", std::string(job_id), " already ",
                       JobStateName(state).substr(10), "; only QUEUED or RUNNING jobs can be "
                       "cancelled"));
    }
    if (absl::Status s = CancelQueuedTasks(tx, job_id); !s.ok()) return s;
    for (const v1::StageSummary& s : row->job.stages()) {
      if (s.state() == v1::STAGE_STATE_PENDING || s.state() == v1::STAGE_STATE_RUNNING) {
        SetStageState(*row, s.stage(), v1::STAGE_STATE_CANCELLED, now);
      }
    }
    std::string why = reason.empty() ? "cancelled" : absl::StrCat("cancelled: ", std::string(reason));
    row->job.set_status_message(why);
    SetJobState(*row, v1::JOB_STATE_CANCELLED, now);
    if (absl::Status s = SaveJob(tx, *row, now); !s.ok()) return s;
    if (absl::Status s = SchedulerLog(tx, job_id, v1::LOG_SEVERITY_INFO, v1::STAGE_UNSPECIFIED, "",
                                      why, now);
        !s.ok()) {
      return s;
    }
    result = row->job;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<v1::Job> SqlJobStore::FindPublishedModel(std::string_view tenant,
                                                        std::string_view model_name) {
  v1::Job job;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
        "SELECT job FROM jobs WHERE tenant = ? AND model_name = ? AND state = ? LIMIT 1",
        {std::string(tenant), std::string(model_name), int64_t{v1::JOB_STATE_SUCCEEDED}});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) {
      return absl::NotFoundError(
          absl::StrCat("no published model \"", std::string(model_name), "\""));
    }
    if (!job.ParseFromString((*rows)[0].Str(0))) {
      return absl::InternalError("job store: a job record is corrupt");
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return job;
}

absl::StatusOr<JobSnapshot> SqlJobStore::SnapshotJob(std::string_view tenant,
                                                     std::string_view job_id) {
  JobSnapshot snap;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<JobRow> row = LoadJob(tx, job_id);
    if (!row.ok()) return row.status();
    if (row->job.tenant() != tenant) return NoSuchJob(job_id);
    snap.job = std::move(row->job);
    snap.sequence = row->seq;
    absl::StatusOr<std::vector<SqlRow>> e = tx.Query(
        "SELECT COALESCE(MAX(event_id), 0) FROM job_events WHERE job_id = ?", {std::string(job_id)});
    if (!e.ok()) return e.status();
    absl::StatusOr<std::vector<SqlRow>> l = tx.Query(
        "SELECT COALESCE(MAX(log_id), 0) FROM job_logs WHERE job_id = ?", {std::string(job_id)});
    if (!l.ok()) return l.status();
    snap.event_cursor = (*e)[0].Int(0);
    snap.log_cursor = (*l)[0].Int(0);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return snap;
}

absl::StatusOr<std::vector<StoredEvent>> SqlJobStore::ReadJobEvents(std::string_view job_id,
                                                                    int64_t after, int limit) {
  std::vector<StoredEvent> out;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    out.clear();
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
        "SELECT event_id, event FROM job_events WHERE job_id = ? AND event_id > ? "
        "ORDER BY event_id LIMIT ?",
        {std::string(job_id), after, int64_t{limit}});
    if (!rows.ok()) return rows.status();
    for (const SqlRow& r : *rows) {
      StoredEvent e;
      e.cursor = r.Int(0);
      if (!e.event.ParseFromString(r.Str(1))) {
        return absl::InternalError("job store: an event record is corrupt");
      }
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<StoredLogLine>> SqlJobStore::ReadJobLogs(std::string_view job_id,
                                                                    int64_t after,
                                                                    v1::LogSeverity min_severity,
                                                                    int limit) {
  std::vector<StoredLogLine> out;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    out.clear();
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(
        "SELECT log_id, line FROM job_logs WHERE job_id = ? AND log_id > ? AND severity >= ? "
        "ORDER BY log_id LIMIT ?",
        {std::string(job_id), after, int64_t{min_severity}, int64_t{limit}});
    if (!rows.ok()) return rows.status();
    for (const SqlRow& r : *rows) {
      StoredLogLine l;
      l.cursor = r.Int(0);
      if (!l.line.ParseFromString(r.Str(1))) {
        return absl::InternalError("job store: a log record is corrupt");
      }
      out.push_back(std::move(l));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<v1::GetJobLogsResponse> SqlJobStore::GetJobLogs(
    std::string_view tenant, const v1::GetJobLogsRequest& request) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must not be negative, got ", request.page_size()));
  }
  if (!v1::LogSeverity_IsValid(request.min_severity())) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_severity: unknown severity ", request.min_severity()));
  }
  if (!v1::Stage_IsValid(request.stage())) {
    return absl::InvalidArgumentError(absl::StrCat("stage: unknown stage ", request.stage()));
  }
  if (!request.task_id().empty()) {
    if (absl::Status s = CheckId(request.task_id(), "task_id"); !s.ok()) return s;
  }
  const int page_size = request.page_size() == 0 ? 500 : std::min(request.page_size(), 10000);
  v1::GetJobLogsRequest filters = request;
  filters.clear_page_size();
  filters.clear_page_token();
  const std::string fingerprint = FilterFingerprint(filters);
  int64_t after = 0;
  if (!request.page_token().empty()) {
    absl::StatusOr<std::vector<std::string>> pos =
        DecodePageToken(request.page_token(), "logs", fingerprint, 1);
    if (!pos.ok()) return pos.status();
    if (!absl::SimpleAtoi((*pos)[0], &after) || after < 0) {
      return absl::InvalidArgumentError("page_token: malformed; pass the next_page_token of the "
                                        "previous response unchanged");
    }
  }
  std::string sql = "SELECT log_id, line FROM job_logs WHERE job_id = ? AND log_id > ?";
  std::vector<SqlValue> params = {request.job_id(), after};
  if (request.min_severity() != v1::LOG_SEVERITY_UNSPECIFIED) {
    sql += " AND severity >= ?";
    params.push_back(int64_t{request.min_severity()});
  }
  if (request.stage() != v1::STAGE_UNSPECIFIED) {
    sql += " AND stage = ?";
    params.push_back(int64_t{request.stage()});
  }
  if (!request.task_id().empty()) {
    sql += " AND task_id = ?";
    params.push_back(request.task_id());
  }
  sql += " ORDER BY log_id LIMIT ?";
  params.push_back(int64_t{page_size});

  v1::GetJobLogsResponse response;
  absl::Status status = db_->Transact([&](SqlTransaction& tx) -> absl::Status {
    response.Clear();
    absl::StatusOr<std::vector<SqlRow>> job = tx.Query(
        "SELECT state FROM jobs WHERE job_id = ? AND tenant = ?",
        {request.job_id(), std::string(tenant)});
    if (!job.ok()) return job.status();
    if (job->empty()) return NoSuchJob(request.job_id());
    const bool terminal = IsTerminal(static_cast<v1::JobState>((*job)[0].Int(0)));
    absl::StatusOr<std::vector<SqlRow>> rows = tx.Query(sql, params);
    if (!rows.ok()) return rows.status();
    int64_t last = after;
    for (const SqlRow& r : *rows) {
      if (!response.add_lines()->ParseFromString(r.Str(1))) {
        return absl::InternalError("job store: a log record is corrupt");
      }
      last = r.Int(0);
    }
    // A job that can still write lines always gets a token to poll with.
    if (!terminal || static_cast<int>(rows->size()) == page_size) {
      response.set_next_page_token(EncodePageToken("logs", fingerprint, {absl::StrCat(last)}));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

}  // namespace linearize::scheduler
