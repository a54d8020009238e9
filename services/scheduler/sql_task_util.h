// Helpers shared by the task-side files of SqlJobStore (sql_task_queue.cc,
// sql_task_reports.cc). Internal to the store.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/scheduler/sql_job_store.h"

namespace linearize::scheduler::internal {

inline constexpr char kTaskColumns[] =
    "task_id, job_id, tenant, kind, ordinal, state, attempt, fencing_token, gpus, layer_first, "
    "layer_count, lease_id, checkpoint_path, result_path, lease_deadline_us, usage";

inline SqlJobStore::TaskRow ParseTask(const SqlRow& r) {
  SqlJobStore::TaskRow t;
  t.task_id = r.Str(0);
  t.job_id = r.Str(1);
  t.tenant = r.Str(2);
  t.kind = static_cast<v1::Stage>(r.Int(3));
  t.ordinal = r.Int(4);
  t.state = r.Int(5);
  t.attempt = r.Int(6);
  t.fencing_token = r.Int(7);
  t.gpus = r.Int(8);
  t.layer_first = r.Int(9);
  t.layer_count = r.Int(10);
  t.lease_id = r.Str(11);
  t.checkpoint_path = r.Str(12);
  t.result_path = r.Str(13);
  t.lease_deadline_us = r.Int(14);
  if (!r.IsNull(15)) t.usage.ParseFromString(r.Str(15));
  return t;
}

// True when `path` is a clean relative path equal to `dir` or inside it.
inline bool IsInside(std::string_view path, std::string_view dir) {
  if (path.empty() || path.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(std::string(path), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return path == dir || (absl::StartsWith(std::string(path), std::string(dir)) && path.size() > dir.size() &&
                         path[dir.size()] == '/');
}

inline absl::Status PathOutside(std::string_view field, std::string_view path, std::string_view dir) {
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(field), ": \"", std::string(path), "\" is not inside the task's output_path \"",
      std::string(dir), "\" (paths are relative to the artifact root)"));
}

inline std::string BlockText(const SqlJobStore::TaskRow& t) {
  if (t.layer_first < 0) return "";
  return absl::StrCat(" (layers ", t.layer_first, "-", t.layer_first + t.layer_count - 1, ")");
}

inline v1::StageSummary* FindStage(v1::Job& job, v1::Stage stage) {
  for (v1::StageSummary& s : *job.mutable_stages()) {
    if (s.stage() == stage) return &s;
  }
  return nullptr;
}

inline absl::Status LeaseLostOutcome(std::string_view why) {
  return absl::FailedPreconditionError(std::string(why));
}

// Adds an attempt's usage to the task, its stage and its job.
inline void ChargeUsage(SqlJobStore::JobRow& job, v1::Stage stage, v1::ResourceUsage* task_usage,
                        const v1::ResourceUsage& attempt) {
  AddUsage(task_usage, attempt);
  AddUsage(job.job.mutable_usage(), attempt);
  if (v1::StageSummary* s = FindStage(job.job, stage)) AddUsage(s->mutable_usage(), attempt);
}

}  // namespace linearize::scheduler::internal
