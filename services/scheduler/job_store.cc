#include "services/scheduler/job_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/scheduler/postgres_database.h"
#include "services/scheduler/schema.h"
#include "services/scheduler/sql_job_store.h"
#include "services/scheduler/sqlite_database.h"

namespace linearize::scheduler {

absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(const std::string& url,
                                                       JobStoreOptions options) {
  absl::StatusOr<std::unique_ptr<SqlDatabase>> db;
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    db = OpenPostgresDatabase(url);
  } else {
    std::string path = url;
    if (absl::StartsWith(path, "sqlite://")) {
      path = path.substr(9);  // sqlite:///abs/path -> /abs/path
    } else if (absl::StartsWith(path, "sqlite:")) {
      path = path.substr(7);
    } else if (absl::StrContains(path, "://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "store: unsupported URL \"", url,
          "\"; use sqlite:///path/to/db, a plain path, or postgresql://..."));
    }
    if (path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("store: no database path in \"", url, "\""));
    }
    db = OpenSqliteDatabase(path);
  }
  if (!db.ok()) return db.status();
  if (absl::Status s = Migrate(**db, options.schema_version); !s.ok()) return s;
  return std::unique_ptr<JobStore>(new SqlJobStore(std::move(*db), std::move(options)));
}

}  // namespace linearize::scheduler
