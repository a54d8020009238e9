// Evaluation tasks as they run: names and defaults filled in
// (evaluation.proto), every field checked. The scheduler fills a job's
// tasks the same way; applying this again to them changes nothing.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "linearize/v1/evaluation.pb.h"

namespace linearize::evaluator {

// INVALID_ARGUMENT naming the field ("tasks[2].perplexity.sequence_length:
// must be in [16, 1048576], got 8") for 0 or more than 64 tasks, a task
// without a kind, a bad or repeated name, or values out of range. Inside a
// job (`in_job`) a perplexity task may have no sources (the job's
// validation text); in EvaluationService.Evaluate it must have some.
absl::Status ApplyTaskDefaults(std::vector<v1::EvaluationTask>* tasks, bool in_job);

}  // namespace linearize::evaluator
