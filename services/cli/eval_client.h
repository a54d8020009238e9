// `linearize eval --server ADDR`: the same tasks run by linearize-evaluator
// (EvaluationService.Evaluate) on models and texts under the server's
// artifact root, with its progress streamed to stderr and the report it
// stores printed and written to --out/report.json.
#pragma once

#include "absl/status/status.h"
#include "services/cli/eval_command.h"

namespace linearize::cli {

// INVALID_ARGUMENT for tasks the service does not run (speed) or no tasks;
// the server's errors come back as "<CODE>: <message>"; a report that did
// not succeed is an error naming its state.
absl::Status RunEvalOnServer(const EvalArgs& args);

}  // namespace linearize::cli
