// Runs the tasks of an evaluation (proto/linearize/v1/evaluation.proto) on
// a model and, when given, its teacher, on exactly the same items:
//   perplexity       windows of sequence_length tokens every `stride`
//                    tokens (only a window's last `stride` targets are
//                    scored, the first window's all), up to max_tokens
//                    targets; with a teacher also KL(teacher || model) and
//                    top-1 agreement per scored position;
//   recall           passkey or MQAR prompts (common/eval/recall.h) at each
//                    context length that fits the model's context;
//   multiple choice  JSONL items scored by log-likelihood
//                    (common/eval/multiple_choice.h).
// Tasks run one after another; a task that cannot run ends FAILED with its
// error and the next one runs. Not thread-safe; one run per object.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/load.h"
#include "linearize/v1/evaluation.pb.h"
#include "linearize/v1/evaluation_service.pb.h"  // EvaluationProgress

namespace linearize::evaluator {

struct EngineInputs {
  const model::LoadedModel* model = nullptr;    // required
  const model::LoadedModel* teacher = nullptr;  // optional
  // Tasks with defaults applied (task_defaults.h).
  std::vector<v1::EvaluationTask> tasks;
  // Absolute directory that task paths are relative to.
  std::string artifact_root;
  // Absolute paths of the text scored by a perplexity task without sources.
  std::vector<std::string> default_texts;
};

struct EngineCallbacks {
  // A task's progress; called after every item (the caller throttles).
  std::function<void(const v1::EvaluationProgress&)> progress;
  // A task ended (SUCCEEDED, FAILED or CANCELLED).
  std::function<void(const v1::EvaluationTaskResult&)> task_done;
  // Polled between items; true stops the run (the running task and those
  // after it end CANCELLED).
  std::function<bool()> cancelled;
};

// Runs every task; returns one result per task, in order.
std::vector<v1::EvaluationTaskResult> RunEvaluationTasks(const EngineInputs& inputs,
                                                         const EngineCallbacks& callbacks);

// Items (windows, context lengths, files) task `task` will score; 0 when
// unknown before running.
int64_t PlannedItems(const v1::EvaluationTask& task);

}  // namespace linearize::evaluator
