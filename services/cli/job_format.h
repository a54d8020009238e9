// How the `linearize` job commands show jobs, log lines and WatchJob
// events to people: names without enum prefixes, short durations, a table
// row per job, a detailed view of one job, and the live progress of a
// watched job (a bar redrawn in place on a terminal, plain lines
// otherwise).
#pragma once

#include <cstdio>
#include <string>

#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "linearize/v1/job_service.pb.h"

namespace linearize::cli {

// "RUNNING", "attention transfer", "lolcats", "INFO".
std::string JobStateName(v1::JobState state);
std::string StageLabel(v1::Stage stage);
std::string RecipeLabel(v1::RecipeKind kind);
std::string SeverityName(v1::LogSeverity severity);

// "42s", "5m03s", "2h07m"; "-" for a negative or unset duration.
std::string ShortDuration(double seconds);
std::string ShortDuration(const google::protobuf::Duration& d);
// "2025-01-02 03:04:05Z"; "-" when unset.
std::string TimeText(const google::protobuf::Timestamp& t);

// The header and a row of `linearize list`, columns aligned.
std::string JobTableHeader();
std::string JobTableRow(const v1::Job& job);
// `linearize get`: every field people need, one per line.
std::string DescribeJob(const v1::Job& job);
// "2025-01-02 03:04:05Z INFO  [finetune t-1] message key=value"
std::string LogLineText(const v1::LogLine& line);
// "finetune [#####.....] 50/100 loss 1.234 3500 tok/s ETA 5m03s"
std::string ProgressText(const v1::StageProgress& p);

// Prints a WatchJob stream. On a terminal (`tty`) progress is one line
// redrawn in place; elsewhere every event is its own line.
class WatchPrinter {
 public:
  WatchPrinter(std::FILE* out, bool tty) : out_(out), tty_(tty) {}
  ~WatchPrinter() { EndBar(); }
  WatchPrinter(const WatchPrinter&) = delete;
  WatchPrinter& operator=(const WatchPrinter&) = delete;

  void Print(const v1::JobEvent& event);
  // Moves past the progress bar so that what follows starts a new line.
  void EndBar();

 private:
  void Line(const std::string& text);

  std::FILE* out_;
  bool tty_;
  bool bar_open_ = false;
};

}  // namespace linearize::cli
