// Text generation with a LlamaModel: prefill the prompt in one forward, then
// decode one token at a time through the model's Memory (the KV cache for
// the teacher), sampling each token, streaming it as text, and stopping on a
// stop token, a token limit, the context limit or the caller's request.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"
#include "common/model/memory.h"
#include "common/runtime/sampler.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::runtime {

struct GenerateOptions {
  int64_t max_new_tokens = 256;         // >= 0
  std::vector<int32_t> stop_token_ids;  // e.g. model::StopTokenIds(...)
  SamplingParams sampling;
  // Most tokens a sequence may hold (prompt, earlier turns and output);
  // 0: the model's max_position_embeddings.
  int64_t max_context = 0;
};

enum class FinishReason {
  kStop,       // a stop token was sampled
  kLength,     // max_new_tokens or max_context reached
  kCancelled,  // the callback asked to stop
};
std::string_view FinishReasonName(FinishReason reason);  // "stop", "length", "cancelled"

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // the stop token is not counted
};

struct Timings {
  double prefill_seconds = 0;  // the prompt's forward and the first sample
  double decode_seconds = 0;   // every later forward and sample
  double prefill_tokens_per_second = 0;  // prompt tokens / prefill_seconds
  double decode_tokens_per_second = 0;   // decode steps / decode_seconds
};

struct GenerationResult {
  std::vector<int32_t> token_ids;  // generated, without the stop token
  std::string text;                // their text (special tokens skipped)
  FinishReason finish_reason = FinishReason::kLength;
  std::optional<int32_t> stop_token;  // the one sampled, with kStop
  Usage usage;
  Timings timings;
};

// Called for each generated token (not the stop token) with the text that
// became complete with it (possibly empty: a character split across
// tokens). Return false to stop after this token. When generation ends with
// bytes still held back (an incomplete character), one last call passes
// id -1 and those bytes (as U+FFFD); its return value is ignored.
using TokenCallback = std::function<bool(int32_t id, std::string_view piece)>;

class Generator {
 public:
  // `tokenizer` may be null: then pieces and text are empty.
  Generator(const model::LlamaModel& model, const tokenizer::Tokenizer* tokenizer)
      : model_(model), tokenizer_(tokenizer) {}

  // Generates after `prompt` (>= 1 token). With `memory` (batch 1) the
  // prompt continues the sequence it holds, and afterwards the memory holds
  // the prompt and token_ids (never the stop token; the last token is left
  // out only when max_context is full: memory->position() says). Without,
  // a fresh memory is used. INVALID_ARGUMENT for bad options (naming the field), an empty
  // prompt, ids outside the vocabulary, or a prompt that does not fit
  // max_context.
  absl::StatusOr<GenerationResult> Generate(std::span<const int32_t> prompt,
                                            const GenerateOptions& options,
                                            model::Memory* memory = nullptr,
                                            const TokenCallback& on_token = nullptr) const;

 private:
  absl::StatusOr<GenerationResult> GenerateUnchecked(std::span<const int32_t> prompt,
                                                     const GenerateOptions& options,
                                                     model::Memory* memory,
                                                     const TokenCallback& on_token) const;
  const model::LlamaModel& model_;
  const tokenizer::Tokenizer* tokenizer_;
};

}  // namespace linearize::runtime
