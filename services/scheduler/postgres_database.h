// SqlDatabase on a PostgreSQL server through libpq, for several scheduler
// replicas sharing one store. Transact runs SERIALIZABLE, so the store's
// read-then-write logic is correct across replicas; serialization failures
// are retried. TransactLocking runs READ COMMITTED for the hot paths, which
// lock explicitly (SqlDatabase::TransactLocking).
// Connections are pooled (at most `max_connections` at once).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/scheduler/sql_database.h"

namespace linearize::scheduler {

// `url` is a libpq connection string or URI ("postgresql://user@host:port/db").
// Connects once to check the server is reachable; errors name the server.
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenPostgresDatabase(const std::string& url,
                                                                   int max_connections = 16);

// Rewrites `?` placeholders (outside '...' literals) to $1, $2, ...
std::string PostgresPlaceholders(std::string_view sql);

}  // namespace linearize::scheduler
