// Runs one leased task of a conversion job on this worker and reports its
// end to the scheduler:
//   ATTENTION_TRANSFER  the pipeline from the start (or from the attempt's
//                       resume checkpoint) until stage 1 is done; the
//                       checkpoint written when it stops there is the
//                       output (<output_path>/checkpoint). The linear
//                       baseline has no stage 1: the task completes at once.
//   FINETUNE            the stage-1 checkpoint (or the attempt's resume
//                       checkpoint) copied into output_path and resumed to
//                       the end: stage 2 and the export; the output is the
//                       exported Hugging Face directory (output_path).
//   PUBLISH             the exported model's files copied (hard-linked)
//                       into <output_path>/model, the job's artifact.
// Checkpoints land in <output_path>/checkpoint every
// checkpoint_interval_steps; each heartbeat reports the latest, and a
// later attempt resumes from it.
#pragma once

#include <functional>
#include <string>

#include "services/common/task_agent.h"
#include "services/worker/worker_metrics.h"

namespace linearize::worker {

struct RunContext {
  std::string artifact_root;  // absolute; every task path is relative to it
  // True once the worker is shutting down: the run stops at its next step.
  std::function<bool()> shutting_down;
  WorkerMetrics* metrics = nullptr;  // optional
};

enum class Outcome {
  kCompleted,   // CompleteTask accepted
  kFailed,      // FailTask sent (or refused)
  kAbandoned,   // CANCEL / LEASE_LOST: stopped, nothing committed
  kHandedBack,  // shutdown: stopped with a checkpoint reported; the lease is
                // handed back by DeregisterWorker (no attempt counted)
};

std::string OutcomeName(Outcome outcome);

// Runs the task in `keeper` to one of the outcomes above.
Outcome RunTask(server::LeaseKeeper& keeper, const RunContext& context);

}  // namespace linearize::worker
