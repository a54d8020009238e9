// The job store's tables, as an ordered list of versioned migrations.
// schema_version holds the version applied; Migrate applies the missing
// migrations in one transaction (PostgreSQL replicas serialize on an
// advisory lock), so a store is either fully at the new version or
// untouched.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/scheduler/sql_database.h"

namespace linearize::scheduler {

// Migration i (0-based) takes the schema from version i to version i + 1.
// Each is a list of statements written for both dialects, with $BLOB and
// $SERIAL standing for the column types that differ.
const std::vector<std::vector<std::string>>& SchemaMigrations();
inline int LatestSchemaVersion() { return static_cast<int>(SchemaMigrations().size()); }

// Brings the database to `target_version` (0 means the latest). A database
// at a newer version than this binary knows is FAILED_PRECONDITION; one
// above `target_version` is left as it is.
absl::Status Migrate(SqlDatabase& db, int target_version = 0);

// The version recorded in schema_version (0 for an empty database).
absl::StatusOr<int> SchemaVersion(SqlDatabase& db);

}  // namespace linearize::scheduler
