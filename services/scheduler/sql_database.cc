#include "services/scheduler/sql_database.h"

#include <algorithm>
#include <atomic>
#include <charconv>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace linearize::scheduler {

int64_t SqlRow::Int(size_t i) const {
  const SqlValue& v = values_.at(i);
  if (const auto* n = std::get_if<int64_t>(&v)) return *n;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  if (const auto* s = std::get_if<std::string>(&v)) {
    int64_t n = 0;
    std::from_chars(s->data(), s->data() + s->size(), n);
    return n;
  }
  return 0;
}

double SqlRow::Double(size_t i) const {
  const SqlValue& v = values_.at(i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  if (const auto* s = std::get_if<std::string>(&v)) return std::strtod(s->c_str(), nullptr);
  return 0.0;
}

std::string SqlRow::Str(size_t i) const {
  const SqlValue& v = values_.at(i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* b = std::get_if<SqlBlob>(&v)) return b->bytes;
  if (const auto* n = std::get_if<int64_t>(&v)) return absl::StrCat(*n);
  if (const auto* d = std::get_if<double>(&v)) return absl::StrCat(*d);
  return "";
}

namespace {
std::atomic<int64_t> g_conflict_retries{0};
}  // namespace

int64_t SqlConflictRetries() { return g_conflict_retries.load(); }

absl::Status RetryOnAborted(const std::function<absl::Status()>& attempt) {
  constexpr int kMaxAttempts = 30;
  absl::BitGen gen;
  absl::Duration delay = absl::Milliseconds(1);
  absl::Status status;
  for (int i = 0; i < kMaxAttempts; ++i) {
    status = attempt();
    if (!absl::IsAborted(status)) return status;
    ++g_conflict_retries;
    absl::SleepFor(delay * absl::Uniform(gen, 0.5, 1.5));
    delay = std::min(delay * 2, absl::Milliseconds(200));
  }
  return absl::AbortedError(absl::StrCat("transaction kept conflicting with concurrent ones (",
                                         kMaxAttempts, " attempts): ", status.message()));
}

}  // namespace linearize::scheduler
