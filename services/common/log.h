// Structured logs: one line per event on stderr, either logfmt
//   ts=2025-01-02T03:04:05.678Z level=info service=scheduler event=job.queued job_id=j-1
// or JSON lines
//   {"ts":"2025-01-02T03:04:05.678Z","level":"info","service":"scheduler","event":"job.queued","job_id":"j-1"}
// Thread-safe: a line is built first and written with one write(2).
//
//   LogInfo("job.queued", {{"job_id", id}, {"tenant", tenant}});
//   LogError("lease.expired", {{"task_id", t}, {"status", status}});
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace linearize::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kLogfmt, kJson };

// One key=value of a log line. Values convert from strings, integers,
// doubles, booleans and statuses (a status logs as "CODE: message").
struct LogField {
  LogField(std::string_view key, std::string_view value) : key(key), value(value) {}
  LogField(std::string_view key, const std::string& value) : key(key), value(value) {}
  LogField(std::string_view key, const char* value) : key(key), value(value ? value : "") {}
  LogField(std::string_view key, bool value)
      : key(key), value(value ? "true" : "false"), raw(true) {}
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>)
      LogField(std::string_view key, T value)
      : key(key), value(std::to_string(value)), raw(true) {}
  LogField(std::string_view key, double value);
  LogField(std::string_view key, const absl::Status& status);

  std::string key;
  std::string value;
  bool raw = false;  // a number or boolean: unquoted in JSON
};

// Process-wide settings; call from main before threads start logging.
void SetLogLevel(LogLevel level);              // default kInfo
void SetLogFormat(LogFormat format);           // default kLogfmt
void SetLogService(std::string_view service);  // adds service=<name> to every line
// Where lines go instead of stderr (tests); nullptr restores stderr. The
// sink gets the line without its trailing newline.
void SetLogSink(std::function<void(std::string_view line)> sink);

// "debug", "info", "warning" (or "warn"), "error".
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text);
// "logfmt" or "json".
absl::StatusOr<LogFormat> ParseLogFormat(std::string_view text);

bool LogEnabled(LogLevel level);
// `event` is a short dotted name ("server.started"); fields follow it.
void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

inline void LogDebug(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kDebug, event, fields);
}
inline void LogInfo(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
inline void LogWarning(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarning, event, fields);
}
inline void LogError(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, event, fields);
}

// The line Log would write (without newline); exposed for tests.
std::string FormatLogLine(LogFormat format, LogLevel level, std::string_view timestamp,
                          std::string_view service, std::string_view event,
                          std::initializer_list<LogField> fields);

}  // namespace linearize::server
