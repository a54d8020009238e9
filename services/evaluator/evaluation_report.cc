#include "services/evaluator/evaluation_report.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/convert/fs_util.h"

namespace linearize::evaluator {
namespace {

std::string StateName(v1::EvaluationState s) {
  std::string name = v1::EvaluationState_Name(s);
  return name.substr(std::string("EVALUATION_STATE_").size());
}

std::string Ref(const v1::ModelRef& m) {
  switch (m.source_case()) {
    case v1::ModelRef::kArtifactPath: return m.artifact_path();
    case v1::ModelRef::kModelName: return absl::StrCat("model ", m.model_name());
    case v1::ModelRef::kJobId: return absl::StrCat("job ", m.job_id());
    default: return "-";
  }
}

}  // namespace

std::string ReportMarkdown(const v1::EvaluationReport& r) {
  std::string md = absl::StrCat("# Evaluation ", r.report_id(), "\n\n");
  absl::StrAppend(&md, "- model: ", Ref(r.model()), "\n");
  if (r.has_teacher()) absl::StrAppend(&md, "- teacher: ", Ref(r.teacher()), "\n");
  if (!r.job_id().empty()) absl::StrAppend(&md, "- job: ", r.job_id(), "\n");
  absl::StrAppend(&md, "- state: ", StateName(r.state()), "\n");
  if (!r.error().empty()) absl::StrAppend(&md, "- error: ", r.error(), "\n");
  for (const v1::EvaluationTaskResult& t : r.tasks()) {
    absl::StrAppend(&md, "\n## ", t.name(), " (", StateName(t.state()), ")\n\n");
    if (!t.error().empty()) absl::StrAppend(&md, t.error(), "\n\n");
    if (t.metrics().empty()) continue;
    std::map<std::string, double> sorted(t.metrics().begin(), t.metrics().end());
    md += "| metric | value |\n|---|---|\n";
    for (const auto& [k, v] : sorted) absl::StrAppend(&md, "| ", k, " | ", absl::StrFormat("%.6g", v), " |\n");
  }
  return md;
}

absl::Status WriteReportFiles(v1::EvaluationReport* report, const std::string& root,
                              const std::string& rel_dir) {
  const std::string dir = root + "/" + rel_dir;
  if (absl::Status s = convert::MakeDirs(dir); !s.ok()) return s;
  report->set_markdown_path(rel_dir + "/report.md");
  report->set_json_path(rel_dir + "/report.json");
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  auto st = google::protobuf::util::MessageToJsonString(*report, &json, options);
  if (!st.ok()) {
    return absl::InternalError(absl::StrCat("report to JSON: ", st.ToString()));
  }
  if (absl::Status s = convert::WriteFileAtomic(dir + "/report.md", ReportMarkdown(*report)); !s.ok()) {
    return s;
  }
  return convert::WriteFileAtomic(dir + "/report.json", json + "\n");
}

absl::StatusOr<v1::EvaluationReport> ReadReportFile(const std::string& path) {
  absl::StatusOr<std::string> text = convert::ReadFile(path);
  if (!text.ok()) return text.status();
  v1::EvaluationReport report;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(*text, &report, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", st.ToString()));
  }
  return report;
}

}  // namespace linearize::evaluator
