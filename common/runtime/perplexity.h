// Perplexity of a model on a token sequence: the mean negative
// log-likelihood of each token given those before it, exponentiated.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"

namespace linearize::runtime {

struct PerplexityOptions {
  // Tokens per forward; 0: the model's max_position_embeddings. A longer
  // sequence is scored in overlapping windows (Hugging Face's sliding-window
  // recipe): each later window scores the next `stride` tokens, with the
  // window - stride tokens before them as context. Every token after the
  // first is scored exactly once.
  int64_t window = 0;
  int64_t stride = 0;  // 0: window - 1 (least overlap); else 1 .. window - 1
};

struct PerplexityResult {
  double nll_sum = 0;         // natural log
  int64_t tokens_scored = 0;  // ids.size() - 1
  double mean_nll = 0;
  double perplexity = 0;      // exp(mean_nll)
};

// ids: >= 2 tokens. The first token is context only. INVALID_ARGUMENT for
// bad options (naming the field), too few tokens or ids outside the
// vocabulary.
absl::StatusOr<PerplexityResult> Perplexity(const model::LlamaModel& model,
                                            std::span<const int32_t> ids,
                                            const PerplexityOptions& options = {});

}  // namespace linearize::runtime
