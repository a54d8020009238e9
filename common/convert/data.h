// Training data for conversion: documents from plain-text files and JSONL
// (a "text" field, or "messages" rendered with the model's chat format),
// tokenized, concatenated with EOS between documents and cut into sequences
// of a fixed length; a deterministic train/validation split. Without files,
// self-distillation: sequences sampled from the teacher with a fixed seed.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/load.h"

namespace linearize::convert {

struct DataOptions {
  // .jsonl files are read line by line (objects with "text" or "messages");
  // anything else is one plain-text document.
  std::vector<std::string> files;
  int64_t seq_len = 1024;          // tokens per sequence, >= 2
  double validation_fraction = 0.05;  // at least one sequence each side
  uint64_t seed = 0;
  // Self-distillation (no files): sequences sampled at temperature 1.
  int64_t self_distill_sequences = 64;
};

struct TokenData {
  at::Tensor train;       // [N, seq_len] int64
  at::Tensor validation;  // [M, seq_len] int64
  std::string source;     // "3 files (12,345 tokens)" / "self-distillation ..."
};

// Errors: a file that cannot be read (named), a JSONL line that is neither
// (named by file:line), no text at all, fewer tokens than two sequences
// (one to train, one to validate), or a teacher without a tokenizer when
// files are given.
absl::StatusOr<TokenData> BuildTokenData(const model::LoadedModel& teacher,
                                         const DataOptions& options);

}  // namespace linearize::convert
