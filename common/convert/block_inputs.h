// Cached inputs of a layer block for blockwise attention transfer: the
// teacher's residual stream entering layer `layer` for every train and
// validation sequence. A block run that reads them runs only its own
// layers of the teacher each step; a block run can write the stream leaving
// its block, which is the next block's input, so blocks can go to workers
// one after another. Stored as a safetensors file ("train" [N, T, H],
// "validation" [M, T, H] in the teacher's dtype; metadata: the layer, a
// fingerprint of the token data, so inputs of other data are refused, and
// the teacher's validation perplexity on that data, which a block run
// reports without the whole teacher).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/convert/data.h"
#include "common/model/llama_model.h"

namespace linearize::convert {

struct BlockInputs {
  int64_t layer = 0;
  at::Tensor train;       // [N, T, H], CPU
  at::Tensor validation;  // [M, T, H], CPU
  // ConvertResult::teacher_val_ppl of the run that wrote them; 0: unknown
  // (not computed by ComputeBlockInputs, or a file written without it).
  double teacher_val_ppl = 0;
};

// A hash of the token ids (train, then validation), as hex.
std::string DataFingerprint(const TokenData& data);

// Reads `path` and checks it against what the run expects: inputs of
// `layer`, `hidden` wide, one row per sequence of `data`, of that data.
// INVALID_ARGUMENT names the file and what does not fit.
absl::StatusOr<BlockInputs> ReadBlockInputs(const std::string& path, int64_t layer, int64_t hidden,
                                            const TokenData& data);

// The teacher's stream entering layer `layer` for the sequences `ids`:
// from `start` (their stream entering layer `start_layer`) when defined,
// else from the embeddings (start_layer must then be 0).
absl::StatusOr<at::Tensor> TeacherStream(const model::LlamaModel& teacher, const at::Tensor& ids,
                                         const at::Tensor& start, int64_t start_layer,
                                         int64_t layer);

// The teacher's stream entering layer `layer` for every sequence of `data`,
// run `batch` rows at a time: from `from` when given (inputs of an earlier
// layer), else from the embeddings.
absl::StatusOr<BlockInputs> ComputeBlockInputs(const model::LlamaModel& teacher,
                                               const TokenData& data, int64_t layer, int64_t batch,
                                               const BlockInputs* from);

absl::Status WriteBlockInputs(const std::string& path, const BlockInputs& inputs,
                              const TokenData& data);

// The teacher_val_ppl that the file at `path` records, from its header
// alone; 0 when it records none or cannot be read (ReadBlockInputs then
// says why).
double StoredTeacherPerplexity(const std::string& path);

}  // namespace linearize::convert
