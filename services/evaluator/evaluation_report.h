// Renderings of an EvaluationReport: report.json (the message in proto3
// JSON form) and report.md (a table of every task's metrics), written into
// a directory under the artifact root.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "linearize/v1/evaluation.pb.h"

namespace linearize::evaluator {

std::string ReportMarkdown(const v1::EvaluationReport& report);

// Sets report->markdown_path and json_path to <rel_dir>/report.md and
// report.json (relative to the root) and writes both (atomically, creating
// the directory). Errors name the file.
absl::Status WriteReportFiles(v1::EvaluationReport* report, const std::string& artifact_root,
                              const std::string& rel_dir);

// Reads a report.json written by WriteReportFiles.
absl::StatusOr<v1::EvaluationReport> ReadReportFile(const std::string& path);

}  // namespace linearize::evaluator
