// SqlDatabase on an SQLite file: WAL journal, synchronous=FULL (a commit is
// on disk when Transact returns), a busy timeout for other processes on the
// same file, one connection guarded by a mutex, prepared statements cached.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/scheduler/sql_database.h"

namespace linearize::scheduler {

// Opens (creating if needed) the database file at `path`; ":memory:" gives
// a private in-memory database (tests). Errors name the path.
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqliteDatabase(const std::string& path);

}  // namespace linearize::scheduler
