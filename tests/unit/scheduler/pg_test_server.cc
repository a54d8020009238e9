#include "tests/unit/scheduler/pg_test_server.h"

#include <libpq-fe.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace linearize::scheduler::testing {
namespace {

std::mutex g_mu;
std::string g_url;       // cached server URL
std::string g_own_dir;   // set when this process started the server

std::string Script() { return absl::StrCat(LINEARIZE_SOURCE_DIR, "/scripts/pg-test-server"); }

// Runs a command and returns its stdout; error with stderr's gist otherwise.
absl::StatusOr<std::string> RunCommand(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return absl::InternalError(absl::StrCat("cannot run ", cmd));
  std::string out;
  std::array<char, 512> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int rc = pclose(p);
  if (rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat("`", cmd, "` failed: ", out));
  }
  return out;
}

// Stops a server this process started, after the last test.
class OwnServerCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_own_dir.empty()) {
      (void)RunCommand(absl::StrCat(Script(), " stop ", g_own_dir));
      g_own_dir.clear();
      g_url.clear();
    }
  }
};
[[maybe_unused]] ::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new OwnServerCleanup);

absl::Status Exec(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string err = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", url, ": ", err));
  }
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  PGresult* res = PQexec(conn, sql.c_str());
  absl::Status s = PQresultStatus(res) == PGRES_COMMAND_OK
                       ? absl::OkStatus()
                       : absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(res)));
  PQclear(res);
  PQfinish(conn);
  return s;
}

}  // namespace

absl::StatusOr<std::string> TestPgServerUrl() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_url.empty()) return g_url;
  if (const char* env = getenv("LINEARIZE_TEST_PG_URL"); env && *env) {
    g_url = env;
    return g_url;
  }
  if (const char* file = getenv("LINEARIZE_TEST_PG_URL_FILE"); file && *file) {
    std::ifstream in(file);
    std::string url;
    if (in && std::getline(in, url) && !url.empty()) {
      g_url = url;
      return g_url;
    }
    // The fixture did not leave a URL: start our own below.
  }
  char tmpl[] = "/tmp/linearize-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  absl::StatusOr<std::string> out = RunCommand(absl::StrCat(Script(), " start ", tmpl));
  if (!out.ok()) return out.status();
  std::string url(absl::StripAsciiWhitespace(*out));
  if (url.rfind("postgresql://", 0) != 0) {
    return absl::InternalError(absl::StrCat("pg-test-server printed no URL: ", *out));
  }
  g_own_dir = tmpl;
  g_url = url;
  return g_url;
}

absl::StatusOr<std::string> NewPgSchemaUrl() {
  absl::StatusOr<std::string> admin = TestPgServerUrl();
  if (!admin.ok()) return admin.status();
  static std::mt19937_64 gen{std::random_device{}()};
  std::string schema;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    schema = absl::StrCat("t", getpid(), "_", gen() % 1000000000);
  }
  if (absl::Status s = Exec(*admin, absl::StrCat("CREATE SCHEMA ", schema)); !s.ok()) return s;
  const char* sep = admin->find('?') == std::string::npos ? "?" : "&";
  return absl::StrCat(*admin, sep, "options=-csearch_path%3D", schema);
}

void DropPgSchema(const std::string& schema_url) {
  size_t at = schema_url.find("search_path%3D");
  absl::StatusOr<std::string> admin = TestPgServerUrl();
  if (at == std::string::npos || !admin.ok()) return;
  std::string schema = schema_url.substr(at + 14);
  (void)Exec(*admin, absl::StrCat("DROP SCHEMA IF EXISTS ", schema, " CASCADE"));
}

}  // namespace linearize::scheduler::testing
