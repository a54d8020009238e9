// A minimal SQL database interface that the job store is written against,
// so that one implementation of the store's logic runs on SQLite and on
// PostgreSQL. Statements use `?` placeholders (the PostgreSQL backend
// rewrites them to $1, $2, ...); every statement runs inside a transaction
// started by SqlDatabase::Transact.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace linearize::scheduler {

// Bytes stored in a BLOB (SQLite) or bytea (PostgreSQL) column.
struct SqlBlob {
  std::string bytes;
};

// A parameter or result value. Integers of every width map to int64_t.
using SqlValue = std::variant<std::monostate, int64_t, double, std::string, SqlBlob>;

// One result row. Accessors return the neutral value (0, "") for NULL.
class SqlRow {
 public:
  explicit SqlRow(std::vector<SqlValue> values) : values_(std::move(values)) {}
  size_t size() const { return values_.size(); }
  bool IsNull(size_t i) const { return std::holds_alternative<std::monostate>(values_.at(i)); }
  int64_t Int(size_t i) const;
  double Double(size_t i) const;
  // Text or blob contents.
  std::string Str(size_t i) const;

 private:
  std::vector<SqlValue> values_;
};

enum class SqlDialect { kSqlite, kPostgres };

// The statements of one transaction. Not thread-safe; valid only inside the
// callback given to SqlDatabase::Transact.
class SqlTransaction {
 public:
  virtual ~SqlTransaction() = default;
  // Runs a statement that returns rows (SELECT, or ... RETURNING).
  virtual absl::StatusOr<std::vector<SqlRow>> Query(std::string_view sql,
                                                    const std::vector<SqlValue>& params) = 0;
  // Runs a statement and returns the number of rows it changed.
  virtual absl::StatusOr<int64_t> Exec(std::string_view sql,
                                       const std::vector<SqlValue>& params) = 0;
  virtual SqlDialect dialect() const = 0;
};

// A database holding the job store's tables. Thread-safe.
class SqlDatabase {
 public:
  virtual ~SqlDatabase() = default;
  // Runs `fn` in one transaction and commits it if `fn` returns OK (rolls
  // back otherwise). Conflicts with concurrent transactions (serialization
  // failures, deadlocks, unique-key races) surface as ABORTED from Query or
  // Exec; when `fn` or the commit returns ABORTED the whole transaction is
  // retried with backoff, so `fn` must not have effects outside the
  // database. The store returns ABORTED itself only for such conflicts (a
  // compare-and-set that lost), never for a caller's error.
  virtual absl::Status Transact(const std::function<absl::Status(SqlTransaction&)>& fn) = 0;

  // As Transact, for the hot paths (leasing, creating jobs) whose
  // SERIALIZABLE form conflicts constantly under load on PostgreSQL: runs
  // READ COMMITTED there, so `fn` must take the locks it relies on itself
  // (SELECT ... FOR UPDATE, advisory locks; see SqlJobStore). SQLite runs
  // every transaction alone, so this is plain Transact.
  virtual absl::Status TransactLocking(const std::function<absl::Status(SqlTransaction&)>& fn) {
    return Transact(fn);
  }
  virtual SqlDialect dialect() const = 0;
};

// Retry loop shared by the backends: calls `attempt` until it returns
// something other than ABORTED, at most 30 times, sleeping a jittered,
// doubling delay from 1 ms (capped at 200 ms) in between.
absl::Status RetryOnAborted(const std::function<absl::Status()>& attempt);

// Transactions retried after a conflict, process-wide (benchmarks, metrics).
int64_t SqlConflictRetries();

}  // namespace linearize::scheduler
