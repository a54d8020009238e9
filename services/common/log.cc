#include "services/common/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace linearize::server {
namespace {

struct LogConfig {
  std::mutex mu;  // guards service, sink and writes
  std::string service;
  std::function<void(std::string_view)> sink;
  std::atomic<int> level{static_cast<int>(LogLevel::kInfo)};
  std::atomic<int> format{static_cast<int>(LogFormat::kLogfmt)};
};

LogConfig& Config() {
  static LogConfig* config = new LogConfig();  // never destroyed: threads may log at exit
  return *config;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string Timestamp() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char buf[40];
  const size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return buf;
}

// Quotes `value` with C-style escapes; other control bytes as `hex_format`
// ("\\x%02x" for logfmt, "\\u%04x" for JSON). UTF-8 passes through.
void AppendQuoted(std::string& out, std::string_view value, const char* hex_format) {
  out += '"';
  for (unsigned char c : value) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), hex_format, c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// logfmt: bare when the value is non-empty and has no space, quote, '=' or
// control character; otherwise quoted with \" \\ \n \t \r escaped.
void AppendLogfmt(std::string& out, std::string_view key, std::string_view value) {
  out += key;
  out += '=';
  bool bare = !value.empty();
  for (unsigned char c : value) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) bare = false;
  }
  if (bare) {
    out += value;
    return;
  }
  AppendQuoted(out, value, "\\x%02x");
}

void AppendJsonString(std::string& out, std::string_view value) {
  AppendQuoted(out, value, "\\u%04x");
}

void AppendJson(std::string& out, std::string_view key, std::string_view value, bool raw) {
  out += ',';
  AppendJsonString(out, key);
  out += ':';
  if (raw) {
    out += value;
  } else {
    AppendJsonString(out, value);
  }
}

}  // namespace

LogField::LogField(std::string_view key, double value) : key(key), raw(true) {
  if (!std::isfinite(value)) {
    this->value = std::isnan(value) ? "NaN" : (value > 0 ? "Inf" : "-Inf");
    raw = false;  // not a JSON number
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  this->value.assign(buf, end);
}

LogField::LogField(std::string_view key, const absl::Status& status)
    : key(key),
      value(status.ok() ? "OK"
                        : absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                       std::string(status.message()))) {}

void SetLogLevel(LogLevel level) { Config().level.store(static_cast<int>(level)); }

void SetLogFormat(LogFormat format) { Config().format.store(static_cast<int>(format)); }

void SetLogService(std::string_view service) {
  std::lock_guard<std::mutex> lock(Config().mu);
  Config().service = std::string(service);
}

void SetLogSink(std::function<void(std::string_view line)> sink) {
  std::lock_guard<std::mutex> lock(Config().mu);
  Config().sink = std::move(sink);
}

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warning" || text == "warn") return LogLevel::kWarning;
  if (text == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(absl::StrCat(
      "log-level: must be debug, info, warning or error, got \"", std::string(text), "\""));
}

absl::StatusOr<LogFormat> ParseLogFormat(std::string_view text) {
  if (text == "logfmt") return LogFormat::kLogfmt;
  if (text == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("log-format: must be logfmt or json, got \"", std::string(text), "\""));
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= Config().level.load(); }

std::string FormatLogLine(LogFormat format, LogLevel level, std::string_view timestamp,
                          std::string_view service, std::string_view event,
                          std::initializer_list<LogField> fields) {
  std::string line;
  line.reserve(128);
  if (format == LogFormat::kJson) {
    line += "{\"ts\":";
    AppendJsonString(line, timestamp);
    AppendJson(line, "level", LevelName(level), false);
    if (!service.empty()) AppendJson(line, "service", service, false);
    AppendJson(line, "event", event, false);
    for (const LogField& f : fields) AppendJson(line, f.key, f.value, f.raw);
    line += '}';
    return line;
  }
  AppendLogfmt(line, "ts", timestamp);
  line += ' ';
  AppendLogfmt(line, "level", LevelName(level));
  if (!service.empty()) {
    line += ' ';
    AppendLogfmt(line, "service", service);
  }
  line += ' ';
  AppendLogfmt(line, "event", event);
  for (const LogField& f : fields) {
    line += ' ';
    AppendLogfmt(line, f.key, f.value);
  }
  return line;
}

void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  LogConfig& config = Config();
  const auto format = static_cast<LogFormat>(config.format.load());
  std::lock_guard<std::mutex> lock(config.mu);
  std::string line = FormatLogLine(format, level, Timestamp(), config.service, event, fields);
  if (config.sink) {
    config.sink(line);
    return;
  }
  line += '\n';
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

}  // namespace linearize::server
