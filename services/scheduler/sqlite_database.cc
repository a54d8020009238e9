#include "services/scheduler/sqlite_database.h"

#include <sqlite3.h>

#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace linearize::scheduler {
namespace {

absl::Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string msg = absl::StrCat("sqlite: ", std::string(what), ": ",
                                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      // Another process holds the file past the busy timeout.
      return absl::UnavailableError(msg);
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(msg);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(msg);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

class SqliteDatabase;

class SqliteTransaction final : public SqlTransaction {
 public:
  explicit SqliteTransaction(SqliteDatabase* db) : db_(db) {}
  absl::StatusOr<std::vector<SqlRow>> Query(std::string_view sql,
                                            const std::vector<SqlValue>& params) override;
  absl::StatusOr<int64_t> Exec(std::string_view sql, const std::vector<SqlValue>& params) override;
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }

 private:
  SqliteDatabase* db_;
};

class SqliteDatabase final : public SqlDatabase {
 public:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}
  ~SqliteDatabase() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  absl::Status Transact(const std::function<absl::Status(SqlTransaction&)>& fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    return RetryOnAborted([&]() -> absl::Status {
      // IMMEDIATE takes the write lock up front, so two processes on one
      // file never both read and then fail to upgrade.
      if (absl::Status s = Simple("BEGIN IMMEDIATE"); !s.ok()) return s;
      SqliteTransaction tx(this);
      absl::Status status = fn(tx);
      if (status.ok()) status = Simple("COMMIT");
      if (!status.ok()) (void)Simple("ROLLBACK");
      return status;
    });
  }
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }

  absl::Status Simple(const char* sql) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc, sql);
  }

  // Runs one statement (cached), collecting rows when `rows` is not null.
  absl::StatusOr<int64_t> Run(std::string_view sql, const std::vector<SqlValue>& params,
                              std::vector<SqlRow>* rows) {
    sqlite3_stmt* stmt = nullptr;
    std::string key(sql);
    auto it = statements_.find(key);
    if (it != statements_.end()) {
      stmt = it->second;
    } else {
      int rc = sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("prepare ", key));
      statements_.emplace(key, stmt);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = static_cast<int>(i + 1);
      const SqlValue& p = params[i];
      int rc = SQLITE_OK;
      if (const auto* n = std::get_if<int64_t>(&p)) {
        rc = sqlite3_bind_int64(stmt, idx, *n);
      } else if (const auto* d = std::get_if<double>(&p)) {
        rc = sqlite3_bind_double(stmt, idx, *d);
      } else if (const auto* s = std::get_if<std::string>(&p)) {
        rc = sqlite3_bind_text64(stmt, idx, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      } else if (const auto* b = std::get_if<SqlBlob>(&p)) {
        // A null pointer would bind NULL, not an empty blob.
        rc = b->bytes.empty() ? sqlite3_bind_zeroblob(stmt, idx, 0)
                              : sqlite3_bind_blob64(stmt, idx, b->bytes.data(), b->bytes.size(),
                                                    SQLITE_TRANSIENT);
      } else {
        rc = sqlite3_bind_null(stmt, idx);
      }
      if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("bind ", key));
    }
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        absl::Status s = SqliteError(db_, rc, key);
        sqlite3_reset(stmt);
        return s;
      }
      if (rows == nullptr) continue;
      int n = sqlite3_column_count(stmt);
      std::vector<SqlValue> values(n);
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER: values[c] = static_cast<int64_t>(sqlite3_column_int64(stmt, c)); break;
          case SQLITE_FLOAT: values[c] = sqlite3_column_double(stmt, c); break;
          case SQLITE_TEXT:
            values[c] = std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, c)),
                                    sqlite3_column_bytes(stmt, c));
            break;
          case SQLITE_BLOB: {
            const void* data = sqlite3_column_blob(stmt, c);
            int len = sqlite3_column_bytes(stmt, c);
            values[c] = SqlBlob{data ? std::string(static_cast<const char*>(data), len) : ""};
            break;
          }
          default: break;
        }
      }
      rows->emplace_back(std::move(values));
    }
    int64_t changes = sqlite3_changes64(db_);
    sqlite3_reset(stmt);
    return changes;
  }

 private:
  std::mutex mu_;
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
};

absl::StatusOr<std::vector<SqlRow>> SqliteTransaction::Query(std::string_view sql,
                                                             const std::vector<SqlValue>& params) {
  std::vector<SqlRow> rows;
  absl::StatusOr<int64_t> r = db_->Run(sql, params, &rows);
  if (!r.ok()) return r.status();
  return rows;
}

absl::StatusOr<int64_t> SqliteTransaction::Exec(std::string_view sql,
                                                const std::vector<SqlValue>& params) {
  return db_->Run(sql, params, nullptr);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqliteDatabase(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = absl::StrCat("sqlite: cannot open database \"", path,
                                   "\": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return absl::FailedPreconditionError(msg);
  }
  auto database = std::make_unique<SqliteDatabase>(db);
  sqlite3_busy_timeout(db, 10000);
  // WAL: readers do not block the writer; FULL: every commit is fsynced.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON"}) {
    if (absl::Status s = database->Simple(pragma); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("sqlite: database \"", path, "\": ", s.message()));
    }
  }
  return database;
}

}  // namespace linearize::scheduler
