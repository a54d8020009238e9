// A job's EVALUATE task: the FINETUNE output (the last of input_paths)
// against the teacher (teacher_path) on the job's evaluation tasks
// (spec.evaluation_tasks; a perplexity task without sources scores the
// job's validation files, else the default held-out text). Writes the
// report (report.json in proto3 JSON form, report.md) into the task's
// output_path and completes the task with its report id and headline
// numbers ("<task>.<metric>", e.g. "perplexity.perplexity_ratio").
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "services/common/task_agent.h"
#include "services/evaluator/evaluation_service.h"

namespace linearize::evaluator {

struct EvaluateTaskContext {
  std::string artifact_root;               // absolute
  std::vector<std::string> default_texts;  // absolute
  std::function<bool()> shutting_down;
  EvaluationServiceImpl* service = nullptr;  // optional: GetReport then serves the report
};

// Runs the task in `keeper` and completes or fails it; after a CANCEL /
// LEASE_LOST verdict or at shutdown it stops and commits nothing. Returns
// "completed", "failed", "abandoned" or "handed_back".
std::string RunEvaluateTask(server::LeaseKeeper& keeper, const EvaluateTaskContext& context);

}  // namespace linearize::evaluator
