// What an evaluation run found, as report.json, report.md (tables) and PNG
// plots (perplexity vs position, recall vs context length), every model of
// the run (teacher and students) on the same axes.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/eval/layer_errors.h"
#include "common/eval/multiple_choice.h"
#include "common/eval/recall.h"
#include "common/eval/speed.h"
#include "common/eval/token_scores.h"
#include "common/runtime/perplexity.h"
#include "nlohmann/json.hpp"

namespace linearize::eval {

struct PerplexityEntry {
  std::string model;  // label: "teacher", "student" or a path
  std::string text;   // the text file
  runtime::PerplexityResult result;
  std::optional<PositionCurve> curve;
};

struct RecallEntry {
  std::string model;
  RecallResult result;
};

struct McEntry {
  std::string model;
  McResult result;
};

struct SpeedEntry {
  std::string model;
  SpeedResult result;
};

struct ComparisonEntry {
  std::string model;  // the student's label
  Comparison result;  // teacher vs that student
};
struct LayerErrorEntry {
  std::string model;  // the student's label
  LayerError result;
};
struct EvalReport {
  std::string model;    // the evaluated model's path (or the merged models' labels)
  std::string teacher;  // "" when none
  std::vector<PerplexityEntry> perplexity;
  std::vector<ComparisonEntry> comparisons;
  std::vector<LayerErrorEntry> attention_layers;  // per converted layer, teacher vs student
  std::vector<RecallEntry> mqar;
  std::vector<RecallEntry> passkey;
  std::vector<McEntry> mc;
  std::vector<SpeedEntry> speed;
};

nlohmann::json ReportJson(const EvalReport& report);
std::string ReportMarkdown(const EvalReport& report);
// Writes report.json, report.md and, where there is data, ppl_vs_position.png,
// recall_vs_context.png (one line per model and number of pairs; passkey
// per model) and attention_error_by_layer.png into `dir` (created if
// missing, POSIX mkdir).
absl::Status WriteReport(const EvalReport& report, const std::string& dir);

// Reads back a report.json that WriteReport wrote; errors name the file and
// the field at fault.
absl::StatusOr<EvalReport> ReadReportJson(const std::string& path);

// Joins runs that each evaluated one student beside the same teacher into one
// report (one table per task, one plot with every model): each run's
// non-teacher entries are relabelled with its label. A label may name
// several runs of one student (say, one with recall, one with per-layer
// errors); every model keeps one row per task setting, from the first run
// that has it. INVALID_ARGUMENT when the runs name teachers with different
// file names, a label is empty or "teacher", or there are no runs.
absl::StatusOr<EvalReport> MergeReports(
    const std::vector<std::pair<std::string, EvalReport>>& runs);

}  // namespace linearize::eval
