#include "services/scheduler/schema.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace linearize::scheduler {

const std::vector<std::vector<std::string>>& SchemaMigrations() {
  static const auto* migrations = new std::vector<std::vector<std::string>>{
      // Version 1: jobs, their labels, events and logs; tasks and their
      // leases; workers. Proto messages are stored whole as blobs; the
      // columns queries filter or sort on are real columns.
      {
          "CREATE TABLE jobs ("
          "  job_id TEXT PRIMARY KEY,"
          "  tenant TEXT NOT NULL,"
          "  request_id TEXT,"                    // NULL when the request had none
          "  request $BLOB NOT NULL,"             // SubmitConversionRequest as first received
          "  state BIGINT NOT NULL,"              // linearize.v1.JobState
          "  priority BIGINT NOT NULL,"
          "  recipe BIGINT NOT NULL,"             // linearize.v1.RecipeKind
          "  model_name TEXT NOT NULL,"           // spec.output_model_name after defaults
          "  teacher_path TEXT NOT NULL,"
          "  create_us BIGINT NOT NULL,"
          "  update_us BIGINT NOT NULL,"
          "  seq BIGINT NOT NULL,"                // JobEvent.sequence of the last change
          "  max_parallel BIGINT NOT NULL,"       // budget.max_parallel_tasks; 0: no limit
          "  deadline_us BIGINT NOT NULL,"        // wall-time budget end; 0 until RUNNING
          "  version BIGINT NOT NULL,"            // bumped by every write (compare-and-set)
          "  job $BLOB NOT NULL,"                 // linearize.v1.Job
          "  UNIQUE (tenant, request_id))",
          "CREATE TABLE job_labels ("
          "  job_id TEXT NOT NULL REFERENCES jobs (job_id),"
          "  key TEXT NOT NULL,"
          "  value TEXT NOT NULL,"
          "  PRIMARY KEY (job_id, key))",
          "CREATE TABLE job_events ("
          "  event_id $SERIAL,"
          "  job_id TEXT NOT NULL REFERENCES jobs (job_id),"
          "  time_us BIGINT NOT NULL,"
          "  event $BLOB NOT NULL)",              // linearize.v1.JobEvent
          "CREATE TABLE job_logs ("
          "  log_id $SERIAL,"
          "  job_id TEXT NOT NULL REFERENCES jobs (job_id),"
          "  severity BIGINT NOT NULL,"
          "  stage BIGINT NOT NULL,"
          "  task_id TEXT NOT NULL,"
          "  line $BLOB NOT NULL)",               // linearize.v1.LogLine
          "CREATE TABLE tasks ("
          "  task_id TEXT PRIMARY KEY,"
          "  job_id TEXT NOT NULL REFERENCES jobs (job_id),"
          "  tenant TEXT NOT NULL,"
          "  ordinal BIGINT NOT NULL,"            // position in the job's task graph
          "  kind BIGINT NOT NULL,"               // linearize.v1.Stage
          "  state BIGINT NOT NULL,"              // TaskState (sql_job_store.h)
          "  priority BIGINT NOT NULL,"           // the job's, for ordering
          "  job_create_us BIGINT NOT NULL,"
          "  gpus BIGINT NOT NULL,"
          "  min_gpu_memory BIGINT NOT NULL,"
          "  layer_first BIGINT NOT NULL,"        // -1: all layers
          "  layer_count BIGINT NOT NULL,"
          "  attempt BIGINT NOT NULL,"            // of the current or next lease
          "  fencing_token BIGINT NOT NULL,"      // of the latest lease
          "  lease_id TEXT,"                      // the live lease, NULL unless LEASED
          "  lease_deadline_us BIGINT NOT NULL,"
          "  not_before_us BIGINT NOT NULL,"      // retry backoff
          "  checkpoint_path TEXT NOT NULL,"      // latest reported, survives attempts
          "  result_path TEXT NOT NULL,"          // outputs.output_path once SUCCEEDED
          "  progress $BLOB,"                     // StageProgress last reported
          "  usage $BLOB)",                       // ResourceUsage of finished attempts
          "CREATE TABLE leases ("
          "  lease_id TEXT PRIMARY KEY,"
          "  task_id TEXT NOT NULL REFERENCES tasks (task_id),"
          "  worker_id TEXT NOT NULL,"
          "  fencing_token BIGINT NOT NULL,"
          "  attempt BIGINT NOT NULL,"
          "  state BIGINT NOT NULL,"              // LeaseState (sql_job_store.h)
          "  output_path TEXT NOT NULL,"
          "  grant_us BIGINT NOT NULL,"
          "  usage $BLOB)",                       // ResourceUsage last reported
          "CREATE TABLE workers ("
          "  worker_id TEXT PRIMARY KEY,"
          "  request_id TEXT UNIQUE,"
          "  request $BLOB NOT NULL,"             // RegisterWorkerRequest
          "  gpus BIGINT NOT NULL,"
          "  gpu_memory BIGINT NOT NULL,"         // of its smallest GPU
          "  memory_bytes BIGINT NOT NULL,"
          "  kinds BIGINT NOT NULL,"              // bit (1 << Stage) per kind; 0: all
          "  state BIGINT NOT NULL,"              // WorkerState (sql_job_store.h)
          "  register_us BIGINT NOT NULL,"
          "  last_seen_us BIGINT NOT NULL)",
      },
      // Version 2: indexes for leasing, lease expiry, listing and watching.
      {
          "CREATE INDEX tasks_runnable ON tasks (state, priority DESC, job_create_us, job_id, ordinal)",
          "CREATE INDEX tasks_by_deadline ON tasks (state, lease_deadline_us)",
          "CREATE INDEX tasks_by_job ON tasks (job_id, kind, state)",
          "CREATE INDEX jobs_by_tenant ON jobs (tenant, create_us DESC, job_id)",
          "CREATE INDEX jobs_by_tenant_state ON jobs (tenant, state)",
          "CREATE INDEX jobs_by_deadline ON jobs (state, deadline_us)",
          "CREATE INDEX jobs_by_model_name ON jobs (tenant, model_name)",
          "CREATE INDEX job_events_by_job ON job_events (job_id, event_id)",
          "CREATE INDEX job_logs_by_job ON job_logs (job_id, log_id)",
          "CREATE INDEX leases_by_task ON leases (task_id)",
          "CREATE INDEX leases_by_worker ON leases (worker_id, state)",
          "CREATE INDEX workers_by_state ON workers (state, last_seen_us)",
      },
  };
  return *migrations;
}

namespace {

std::string ForDialect(const std::string& sql, SqlDialect dialect) {
  if (dialect == SqlDialect::kPostgres) {
    return absl::StrReplaceAll(sql, {{"$BLOB", "BYTEA"}, {"$SERIAL", "BIGSERIAL PRIMARY KEY"}});
  }
  return absl::StrReplaceAll(sql, {{"$BLOB", "BLOB"},
                                   {"$SERIAL", "INTEGER PRIMARY KEY AUTOINCREMENT"}});
}

absl::StatusOr<int> ReadVersion(SqlTransaction& tx) {
  if (absl::Status s = tx.Exec("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
                               {}).status();
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::vector<SqlRow>> rows = tx.Query("SELECT version FROM schema_version", {});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    absl::StatusOr<int64_t> n = tx.Exec("INSERT INTO schema_version (version) VALUES (0)", {});
    if (!n.ok()) return n.status();
    return 0;
  }
  return static_cast<int>((*rows)[0].Int(0));
}

}  // namespace

absl::Status Migrate(SqlDatabase& db, int target_version) {
  const int latest = LatestSchemaVersion();
  if (target_version <= 0 || target_version > latest) target_version = latest;
  return db.Transact([&](SqlTransaction& tx) -> absl::Status {
    if (tx.dialect() == SqlDialect::kPostgres) {
      // Replicas starting together migrate one after the other.
      absl::Status s = tx.Query("SELECT pg_advisory_xact_lock(7301966)", {}).status();
      if (!s.ok()) return s;
    }
    absl::StatusOr<int> current = ReadVersion(tx);
    if (!current.ok()) return current.status();
    if (*current > latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job store: schema version ", *current, " is newer than this scheduler knows (",
          latest, "); run a newer scheduler"));
    }
    for (int v = *current; v < target_version; ++v) {
      for (const std::string& statement : SchemaMigrations()[v]) {
        absl::Status s = tx.Exec(ForDialect(statement, tx.dialect()), {}).status();
        if (!s.ok()) {
          return absl::Status(s.code(), absl::StrCat("job store: migration to schema version ",
                                                     v + 1, " failed: ", s.message()));
        }
      }
    }
    if (target_version > *current) {
      return tx.Exec("UPDATE schema_version SET version = ?", {int64_t{target_version}}).status();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<int> SchemaVersion(SqlDatabase& db) {
  int version = 0;
  absl::Status s = db.Transact([&](SqlTransaction& tx) -> absl::Status {
    absl::StatusOr<int> v = ReadVersion(tx);
    if (!v.ok()) return v.status();
    version = *v;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return version;
}

}  // namespace linearize::scheduler
