// A job's ConversionSpec (defaults filled in by the scheduler) as the
// conversion pipeline's options (common/convert/pipeline.h).
//
// Every task of a job maps to the same options (an ATTENTION_TRANSFER task
// of a split stage 1 adds its layer block): the pipeline's checkpoint
// fingerprint must match between ATTENTION_TRANSFER, FINETUNE and every
// resumed attempt. out_dir and resume are the caller's. Where the spec asks
// for something the pipeline cannot do, the mapping fails (INVALID_ARGUMENT
// naming the spec field) instead of silently running something else:
//   - one budget for both stages: tokens = stage 1 + stage 2 token budgets,
//     split evenly by the pipeline; one sequence length, batch size and
//     seed (stage 1's, or stage 2's for the linear baseline);
//   - a skipped stage 1 (other than the linear baseline's) or stage 2,
//     weight decay,
//     attention cross-entropy, LoRA on MLP projections, window-factor and
//     window-weight initialisations other than the defaults, the ReLU
//     baseline, separate validation files, per-source weights or document
//     limits, JSONL field names other than "text"/"messages",
//     self-distillation mixed with files, FP16 and more than one GPU per
//     task are refused;
//   - a task with one GPU trains on "cuda", in bf16 unless the spec says
//     PRECISION_FP32; a CPU task in float32 unless it says PRECISION_BF16.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/convert/pipeline.h"
#include "linearize/v1/worker_service.pb.h"

namespace linearize::worker {

// `artifact_root` is the directory every path of the task is relative to.
absl::StatusOr<convert::ConvertOptions> ConvertOptionsForTask(const v1::Task& task,
                                                              const std::string& artifact_root);

// The pipeline's planned optimizer steps of stage 1 (0 for the linear
// baseline) and stage 2 for these options (the pipeline's own formula).
int64_t PlannedSteps(const convert::ConvertOptions& options, int stage);

// Tokens one optimizer step consumes.
int64_t TokensPerStep(const convert::ConvertOptions& options);

}  // namespace linearize::worker
