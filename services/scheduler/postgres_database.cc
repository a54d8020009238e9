#include "services/scheduler/postgres_database.h"

#include <libpq-fe.h>

#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"

namespace linearize::scheduler {
namespace {

// pg_type OIDs used for parameters and results.
constexpr Oid kBoolOid = 16, kByteaOid = 17, kInt8Oid = 20, kInt2Oid = 21, kInt4Oid = 23,
              kTextOid = 25, kOidOid = 26, kFloat4Oid = 700, kFloat8Oid = 701,
              kNumericOid = 1700;

// Strips the password from a connection string for messages.
std::string Redacted(std::string_view url) {
  std::string out(url);
  size_t scheme = out.find("://");
  size_t at = out.find('@');
  if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
    size_t colon = out.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  return out;
}

absl::Status PgError(PGconn* conn, PGresult* res, std::string_view what) {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state ? state : "";
  std::string text = res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res)
                                                         : PQerrorMessage(conn);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::string msg = absl::StrCat("postgresql: ", std::string(what), ": ", text);
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "23505") {
    // Serialization failure, deadlock, or a unique key raced by a concurrent
    // transaction: the transaction is retried from the start.
    return absl::AbortedError(msg);
  }
  if (absl::StartsWith(sqlstate, "08") || PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(msg);
  }
  if (absl::StartsWith(sqlstate, "53")) return absl::ResourceExhaustedError(msg);
  if (sqlstate == "57014") return absl::DeadlineExceededError(msg);
  return absl::InternalError(msg);
}

class PgTransaction final : public SqlTransaction {
 public:
  explicit PgTransaction(PGconn* conn) : conn_(conn) {}

  absl::StatusOr<std::vector<SqlRow>> Query(std::string_view sql,
                                            const std::vector<SqlValue>& params) override {
    std::vector<SqlRow> rows;
    absl::StatusOr<int64_t> r = Run(sql, params, &rows);
    if (!r.ok()) return r.status();
    return rows;
  }
  absl::StatusOr<int64_t> Exec(std::string_view sql, const std::vector<SqlValue>& params) override {
    return Run(sql, params, nullptr);
  }
  SqlDialect dialect() const override { return SqlDialect::kPostgres; }

 private:
  absl::StatusOr<int64_t> Run(std::string_view sql, const std::vector<SqlValue>& params,
                              std::vector<SqlRow>* rows) {
    std::string text = PostgresPlaceholders(sql);
    const int n = static_cast<int>(params.size());
    std::vector<Oid> types(n, 0);
    std::vector<std::string> storage(n);
    std::vector<const char*> values(n, nullptr);
    std::vector<int> lengths(n, 0), formats(n, 0);
    for (int i = 0; i < n; ++i) {
      const SqlValue& p = params[i];
      if (const auto* v = std::get_if<int64_t>(&p)) {
        types[i] = kInt8Oid;
        storage[i] = absl::StrCat(*v);
      } else if (const auto* d = std::get_if<double>(&p)) {
        types[i] = kFloat8Oid;
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", *d);
        storage[i] = buf;
      } else if (const auto* s = std::get_if<std::string>(&p)) {
        types[i] = kTextOid;
        storage[i] = *s;
      } else if (const auto* b = std::get_if<SqlBlob>(&p)) {
        types[i] = kByteaOid;
        formats[i] = 1;  // binary: the bytes as they are
        storage[i] = b->bytes;
      } else {
        continue;  // NULL
      }
      values[i] = storage[i].data();
      lengths[i] = static_cast<int>(storage[i].size());
    }
    PGresult* res = PQexecParams(conn_, text.c_str(), n, types.data(), values.data(),
                                 lengths.data(), formats.data(), /*resultFormat=*/0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      absl::Status s = PgError(conn_, res, sql);
      PQclear(res);
      return s;
    }
    if (rows != nullptr) {
      const int nrows = PQntuples(res), ncols = PQnfields(res);
      rows->reserve(nrows);
      for (int r = 0; r < nrows; ++r) {
        std::vector<SqlValue> vals(ncols);
        for (int c = 0; c < ncols; ++c) {
          if (PQgetisnull(res, r, c)) continue;
          const char* v = PQgetvalue(res, r, c);
          const int len = PQgetlength(res, r, c);
          switch (PQftype(res, c)) {
            case kInt8Oid: case kInt4Oid: case kInt2Oid: case kOidOid: {
              int64_t x = 0;
              std::from_chars(v, v + len, x);
              vals[c] = x;
              break;
            }
            case kBoolOid: vals[c] = static_cast<int64_t>(v[0] == 't'); break;
            case kFloat4Oid: case kFloat8Oid: case kNumericOid:
              vals[c] = std::strtod(v, nullptr);
              break;
            case kByteaOid: {
              size_t out_len = 0;
              unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v),
                                                   &out_len);
              vals[c] = SqlBlob{std::string(reinterpret_cast<char*>(raw), out_len)};
              PQfreemem(raw);
              break;
            }
            default: vals[c] = std::string(v, len); break;
          }
        }
        rows->emplace_back(std::move(vals));
      }
    }
    int64_t changed = 0;
    const char* tuples = PQcmdTuples(res);
    if (tuples && *tuples) std::from_chars(tuples, tuples + std::strlen(tuples), changed);
    PQclear(res);
    return changed;
  }

  PGconn* conn_;
};

class PostgresDatabase final : public SqlDatabase {
 public:
  PostgresDatabase(std::string url, int max_connections)
      : url_(std::move(url)), max_connections_(max_connections) {}
  ~PostgresDatabase() override {
    for (PGconn* c : idle_) PQfinish(c);
  }

  absl::StatusOr<PGconn*> Connect() {
    PGconn* conn = PQconnectdb(url_.c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string err = PQerrorMessage(conn);
      while (!err.empty() && err.back() == '\n') err.pop_back();
      PQfinish(conn);
      return absl::UnavailableError(
          absl::StrCat("postgresql: cannot connect to ", Redacted(url_), ": ", err));
    }
    // NOTICEs (e.g. "already exists, skipping") are not errors; keep stderr clean.
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
    return conn;
  }

  absl::Status Transact(const std::function<absl::Status(SqlTransaction&)>& fn) override {
    return Run(fn, "BEGIN ISOLATION LEVEL SERIALIZABLE");
  }
  absl::Status TransactLocking(const std::function<absl::Status(SqlTransaction&)>& fn) override {
    return Run(fn, "BEGIN ISOLATION LEVEL READ COMMITTED");
  }
  SqlDialect dialect() const override { return SqlDialect::kPostgres; }

 private:
  absl::Status Run(const std::function<absl::Status(SqlTransaction&)>& fn, const char* begin) {
    absl::StatusOr<PGconn*> conn = Acquire();
    if (!conn.ok()) return conn.status();
    absl::Status status = RetryOnAborted([&]() -> absl::Status {
      if (absl::Status s = Simple(*conn, begin); !s.ok()) return s;
      PgTransaction tx(*conn);
      absl::Status s = fn(tx);
      if (s.ok()) s = Simple(*conn, "COMMIT");
      if (!s.ok()) (void)Simple(*conn, "ROLLBACK");
      return s;
    });
    Release(*conn);
    return status;
  }

  absl::Status Simple(PGconn* conn, const char* sql) {
    PGresult* res = PQexec(conn, sql);
    absl::Status s = PQresultStatus(res) == PGRES_COMMAND_OK ? absl::OkStatus()
                                                             : PgError(conn, res, sql);
    PQclear(res);
    return s;
  }

  absl::StatusOr<PGconn*> Acquire() {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !idle_.empty() || open_ < max_connections_; });
      if (!idle_.empty()) {
        PGconn* c = idle_.back();
        idle_.pop_back();
        return c;
      }
      ++open_;
    }
    absl::StatusOr<PGconn*> c = Connect();
    if (!c.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      --open_;
      cv_.notify_one();
    }
    return c;
  }

  void Release(PGconn* conn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE) {
      idle_.push_back(conn);
    } else {
      PQfinish(conn);  // broken or stuck in a transaction: open a fresh one next time
      --open_;
    }
    cv_.notify_one();
  }

  const std::string url_;
  const int max_connections_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PGconn*> idle_;
  int open_ = 0;
};

}  // namespace

std::string PostgresPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  bool quoted = false;
  for (char c : sql) {
    if (c == '\'') quoted = !quoted;
    if (c == '?' && !quoted) {
      absl::StrAppend(&out, "$", ++n);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenPostgresDatabase(const std::string& url,
                                                                   int max_connections) {
  auto db = std::make_unique<PostgresDatabase>(url, max_connections < 1 ? 1 : max_connections);
  // Fail at start, not at the first request, when the server is unreachable.
  absl::Status probe = db->Transact([](SqlTransaction& tx) { return tx.Exec("SELECT 1", {}).status(); });
  if (!probe.ok()) return probe;
  return db;
}

}  // namespace linearize::scheduler
