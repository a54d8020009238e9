#include "services/common/log.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace linearize::server {
namespace {

TEST(LogTest, LogfmtQuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(FormatLogLine(LogFormat::kLogfmt, LogLevel::kInfo, "2025-01-02T03:04:05.678Z",
                          "scheduler", "job.queued",
                          {{"job_id", "j-1"},
                           {"display", "my job"},
                           {"note", "say \"hi\"\nbye\\"},
                           {"empty", ""},
                           {"eq", "a=b"},
                           {"n", 42},
                           {"x", 0.5},
                           {"ok", true}}),
            "ts=2025-01-02T03:04:05.678Z level=info service=scheduler event=job.queued "
            "job_id=j-1 display=\"my job\" note=\"say \\\"hi\\\"\\nbye\\\\\" empty=\"\" "
            "eq=\"a=b\" n=42 x=0.5 ok=true");
}

TEST(LogTest, JsonLinesWithTypedValues) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, LogLevel::kError, "T", "", "lease.expired",
                          {{"task_id", "t\"1\""},
                           {"attempt", int64_t{3}},
                           {"status", absl::NotFoundError("no task")},
                           {"ratio", std::numeric_limits<double>::quiet_NaN()},
                           {"ctl", std::string("a\x01")}}),
            "{\"ts\":\"T\",\"level\":\"error\",\"event\":\"lease.expired\","
            "\"task_id\":\"t\\\"1\\\"\",\"attempt\":3,\"status\":\"NOT_FOUND: no task\","
            "\"ratio\":\"NaN\",\"ctl\":\"a\\u0001\"}");
}

TEST(LogTest, LevelFilterAndSink) {
  std::vector<std::string> lines;
  SetLogSink([&](std::string_view line) { lines.emplace_back(line); });
  SetLogService("test");
  SetLogLevel(LogLevel::kWarning);
  LogInfo("dropped");
  LogWarning("kept", {{"k", "v"}});
  SetLogLevel(LogLevel::kDebug);
  LogDebug("debug.kept");
  SetLogFormat(LogFormat::kJson);
  LogError("json.line");
  SetLogFormat(LogFormat::kLogfmt);
  SetLogLevel(LogLevel::kInfo);
  SetLogSink(nullptr);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find(" level=warning service=test event=kept k=v"), std::string::npos)
      << lines[0];
  EXPECT_TRUE(lines[0].starts_with("ts=20")) << lines[0];
  EXPECT_NE(lines[1].find("event=debug.kept"), std::string::npos);
  EXPECT_TRUE(lines[2].starts_with("{\"ts\":\"20")) << lines[2];
  EXPECT_NE(lines[2].find("\"event\":\"json.line\""), std::string::npos);
  for (const auto& line : lines) EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(LogTest, ParsesLevelsAndFormats) {
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("loud").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_NE(ParseLogFormat("xml").status().message().find("\"xml\""), std::string::npos);
}

}  // namespace
}  // namespace linearize::server
