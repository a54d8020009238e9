// Generation speed on this host: prefill (prompt tokens per second of the
// first forward) and decode (generated tokens per second afterwards), greedy,
// no stop tokens, so every run decodes exactly `decode_tokens`.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"

namespace linearize::eval {

struct SpeedOptions {
  int64_t prompt_tokens = 128;  // >= 1
  int64_t decode_tokens = 64;   // >= 1
  int64_t repeats = 3;          // the median run is reported
  uint64_t seed = 0;            // the prompt's random ids
};

struct SpeedResult {
  int64_t prompt_tokens = 0;
  int64_t decode_tokens = 0;
  int64_t threads = 0;  // at::get_num_threads()
  double prefill_tokens_per_second = 0;
  double decode_tokens_per_second = 0;
};

absl::StatusOr<SpeedResult> MeasureSpeed(const model::LlamaModel& model,
                                         const SpeedOptions& options = {});

}  // namespace linearize::eval
