// A PostgreSQL server for the store tests. In order of preference:
//   - LINEARIZE_TEST_PG_URL: a server someone else runs;
//   - LINEARIZE_TEST_PG_URL_FILE: a file holding the URL of the server that
//     ctest's fixture (scripts/pg-test-server start) started for all tests;
//   - otherwise one started here with scripts/pg-test-server in a temporary
//     directory and stopped when the test program ends.
// Missing PostgreSQL binaries are an error (the tests FAIL; CI installs
// them with scripts/setup).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace linearize::scheduler::testing {

// The URL of the server's admin database.
absl::StatusOr<std::string> TestPgServerUrl();

// Creates a fresh schema on the test server and returns a URL whose
// connections use it (search_path), so every test starts from nothing.
absl::StatusOr<std::string> NewPgSchemaUrl();

// Drops a schema made by NewPgSchemaUrl (best effort).
void DropPgSchema(const std::string& schema_url);

}  // namespace linearize::scheduler::testing
