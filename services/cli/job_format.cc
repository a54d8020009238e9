#include "services/cli/job_format.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace linearize::cli {
namespace {

// An enum value's name without its prefix ("JOB_STATE_RUNNING" -> "RUNNING");
// the number for values this build does not know.
std::string Suffix(const std::string& name, size_t prefix, int value) {
  if (name.size() <= prefix) return absl::StrCat(value);
  return name.substr(prefix);
}

std::string Bar(int64_t step, int64_t total) {
  constexpr int kWidth = 24;
  const int filled =
      static_cast<int>(kWidth * std::clamp<double>(double(step) / double(total), 0, 1));
  return absl::StrCat("[", std::string(size_t(filled), '#'), std::string(size_t(kWidth - filled), '.'),
                      "]");
}

}  // namespace

std::string JobStateName(v1::JobState state) {
  return Suffix(v1::JobState_Name(state), 10, state);
}

std::string StageLabel(v1::Stage stage) {
  if (stage == v1::STAGE_UNSPECIFIED) return "-";
  std::string s = absl::AsciiStrToLower(Suffix(v1::Stage_Name(stage), 6, stage));
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

std::string RecipeLabel(v1::RecipeKind kind) {
  if (kind == v1::RECIPE_KIND_LINEAR_BASELINE) return "linear";
  return absl::AsciiStrToLower(Suffix(v1::RecipeKind_Name(kind), 12, kind));
}

std::string SeverityName(v1::LogSeverity severity) {
  return Suffix(v1::LogSeverity_Name(severity), 13, severity);
}

std::string ShortDuration(double seconds) {
  if (!(seconds >= 0)) return "-";
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string ShortDuration(const google::protobuf::Duration& d) {
  return ShortDuration(double(d.seconds()) + d.nanos() * 1e-9);
}

std::string TimeText(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

std::string JobTableHeader() {
  return absl::StrFormat("%-28s %-10s %-19s %-8s %-21s %s", "JOB", "STATE", "STAGE", "RECIPE",
                         "CREATED", "NAME");
}

std::string JobTableRow(const v1::Job& job) {
  const std::string& name = job.display_name().empty() ? job.spec().output_model_name()
                                                       : job.display_name();
  return absl::StrFormat("%-28s %-10s %-19s %-8s %-21s %s", job.job_id(),
                         JobStateName(job.state()), StageLabel(job.stage()),
                         RecipeLabel(job.spec().recipe().kind()), TimeText(job.create_time()),
                         name);
}

std::string DescribeJob(const v1::Job& job) {
  std::string out;
  auto field = [&](const char* key, const std::string& value) {
    if (!value.empty()) absl::StrAppendFormat(&out, "%-20s %s\n", key, value);
  };
  const v1::ModelRef& teacher = job.spec().teacher();
  field("job", job.job_id());
  field("name", job.display_name());
  field("tenant", job.tenant());
  field("state", JobStateName(job.state()));
  field("stage", job.stage() == v1::STAGE_UNSPECIFIED ? "" : StageLabel(job.stage()));
  field("status", job.status_message());
  field("recipe", RecipeLabel(job.spec().recipe().kind()));
  field("teacher", teacher.has_artifact_path() ? teacher.artifact_path()
                   : teacher.has_model_name()  ? absl::StrCat("model ", teacher.model_name())
                   : teacher.has_job_id()      ? absl::StrCat("job ", teacher.job_id())
                                               : "");
  field("output model", job.spec().output_model_name());
  field("priority", absl::StrCat(job.priority()));
  field("request id", job.request_id());
  field("created", TimeText(job.create_time()));
  if (job.has_start_time()) field("started", TimeText(job.start_time()));
  if (job.has_end_time()) field("ended", TimeText(job.end_time()));
  if (job.has_progress()) field("progress", ProgressText(job.progress()));
  for (const v1::StageSummary& s : job.stages()) {
    std::string text = absl::StrCat(Suffix(v1::StageState_Name(s.state()), 12, s.state()), ", ",
                                    s.tasks_succeeded(), "/", s.tasks_total(), " tasks");
    if (s.has_final_loss()) absl::StrAppendFormat(&text, ", final loss %.4g", s.final_loss());
    if (s.has_start_time() && s.has_end_time()) {
      absl::StrAppend(&text, ", ",
                      ShortDuration(double(s.end_time().seconds() - s.start_time().seconds())));
    }
    field(absl::StrCat("  ", StageLabel(s.stage())).c_str(), text);
  }
  if (job.state() == v1::JOB_STATE_FAILED) {
    field("failure", absl::StrCat(Suffix(v1::FailureCode_Name(job.failure().code()), 13,
                                         job.failure().code()),
                                  ": ", job.failure().message()));
  }
  field("model", job.model_name());
  field("artifact", job.artifact_path());
  field("report", job.evaluation_report_id());
  if (job.usage().tokens_processed() > 0 || job.usage().gpu_seconds() > 0) {
    field("usage", absl::StrFormat("%d tokens, %.0f GPU-seconds, %.0f CPU-seconds",
                                   job.usage().tokens_processed(), job.usage().gpu_seconds(),
                                   job.usage().cpu_seconds()));
  }
  if (!job.labels().empty()) {
    std::vector<std::string> labels;
    for (const auto& [k, v] : job.labels()) labels.push_back(absl::StrCat(k, "=", v));
    std::sort(labels.begin(), labels.end());
    field("labels", absl::StrJoin(labels, ", "));
  }
  return out;
}

std::string LogLineText(const v1::LogLine& line) {
  std::string where;
  if (line.stage() != v1::STAGE_UNSPECIFIED || !line.task_id().empty()) {
    where = absl::StrCat(" [", StageLabel(line.stage()),
                         line.task_id().empty() ? "" : absl::StrCat(" ", line.task_id()), "]");
  }
  std::string out = absl::StrFormat("%s %-7s%s %s", TimeText(line.time()),
                                    SeverityName(line.severity()), where, line.message());
  std::vector<std::string> fields;
  for (const auto& [k, v] : line.fields()) fields.push_back(absl::StrCat(k, "=", v));
  std::sort(fields.begin(), fields.end());
  if (!fields.empty()) absl::StrAppend(&out, " ", absl::StrJoin(fields, " "));
  return out;
}

std::string ProgressText(const v1::StageProgress& p) {
  std::string out = StageLabel(p.stage());
  if (p.has_layer_block()) {
    absl::StrAppend(&out, " (layers ", p.layer_block().first_layer(), "-",
                    p.layer_block().first_layer() + p.layer_block().num_layers() - 1, ")");
  }
  if (p.total_steps() > 0) {
    absl::StrAppend(&out, " ", Bar(p.step(), p.total_steps()), " ", p.step(), "/",
                    p.total_steps());
  } else {
    absl::StrAppend(&out, " step ", p.step());
  }
  if (p.has_loss()) absl::StrAppendFormat(&out, " loss %.4g", p.loss());
  if (p.has_validation_loss()) absl::StrAppendFormat(&out, " val %.4g", p.validation_loss());
  if (p.tokens_per_second() > 0) absl::StrAppendFormat(&out, " %.0f tok/s", p.tokens_per_second());
  if (p.has_eta()) absl::StrAppend(&out, " ETA ", ShortDuration(p.eta()));
  return out;
}

void WatchPrinter::Line(const std::string& text) {
  EndBar();
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void WatchPrinter::EndBar() {
  if (bar_open_) std::fprintf(out_, "\n");
  bar_open_ = false;
}

void WatchPrinter::Print(const v1::JobEvent& e) {
  switch (e.event_case()) {
    case v1::JobEvent::kSnapshot: {
      const v1::Job& job = e.snapshot();
      Line(absl::StrCat("job ", job.job_id(), ": ", JobStateName(job.state()),
                        job.stage() == v1::STAGE_UNSPECIFIED
                            ? ""
                            : absl::StrCat(", ", StageLabel(job.stage())),
                        job.status_message().empty() ? "" : " - " + job.status_message()));
      if (job.has_progress()) Line(ProgressText(job.progress()));
      break;
    }
    case v1::JobEvent::kStateChange: {
      const v1::Job& job = e.state_change().job();
      Line(absl::StrCat("state ", JobStateName(e.state_change().previous_state()), " -> ",
                        JobStateName(e.state_change().state()),
                        job.status_message().empty() ? "" : " - " + job.status_message()));
      break;
    }
    case v1::JobEvent::kStageChange: {
      const v1::StageSummary& s = e.stage_change().stage();
      std::string text = absl::StrCat("stage ", StageLabel(s.stage()), ": ",
                                      Suffix(v1::StageState_Name(s.state()), 12, s.state()));
      if (s.has_final_loss()) absl::StrAppendFormat(&text, " (final loss %.4g)", s.final_loss());
      Line(text);
      break;
    }
    case v1::JobEvent::kProgress:
      if (tty_) {
        std::fprintf(out_, "\r\033[K%s", ProgressText(e.progress()).c_str());
        std::fflush(out_);
        bar_open_ = true;
      } else {
        Line(ProgressText(e.progress()));
      }
      break;
    case v1::JobEvent::kLog:
      Line(LogLineText(e.log()));
      break;
    case v1::JobEvent::kLogGap:
      Line(absl::StrCat("(", e.log_gap().dropped_lines(),
                        " log lines dropped while reading slowly; `linearize logs` has them)"));
      break;
    case v1::JobEvent::EVENT_NOT_SET:
      break;
  }
}

}  // namespace linearize::cli
