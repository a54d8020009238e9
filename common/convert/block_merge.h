// Joining blockwise attention transfer: the stage-1 checkpoints of runs
// that each trained a block of layers (ConvertOptions::block_count) become
// one stage-1 checkpoint, which a run with the same options and no block
// resumes into stage 2 (the platform's FINETUNE task after per-block
// ATTENTION_TRANSFER tasks).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace linearize::convert {

// `blocks`: checkpoint directories (state.json + tensors.safetensors), each
// at the end of stage 1 of the same conversion (same fingerprint and step),
// whose blocks do not overlap. Writes the union of their student and
// optimizer tensors, the shared data and LoRA tensors, and a state whose
// attention MSEs are the blocks' sums, to `out` (replaced atomically).
// INVALID_ARGUMENT names the checkpoint at fault; whether the blocks cover
// every layer is checked when the merged checkpoint is resumed.
absl::Status MergeStage1Checkpoints(const std::vector<std::string>& blocks, const std::string& out);

}  // namespace linearize::convert
