// Associative recall probes.
//
// MQAR (multi-query associative recall, Zoology): key-value token pairs are
// planted at the start of the context, filler follows, and at the end keys
// are queried again, each followed by its value (teacher forcing). A query
// is answered correctly when the model's greedy (argmax) next token after
// the query key is the planted value. One forward scores every query.
//
// Passkey retrieval: a 5-digit number hidden at a given depth in repeated
// filler text, then "What is the pass key? The pass key is"; correct when
// the first run of digits in the greedy continuation is the number.
//
// Samples are deterministic functions of (seed, sample index) and are
// returned so that a caller can check the scoring by brute force.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::eval {

// Tokens MQAR draws from. With a tokenizer: non-special tokens that are a
// space and 2-8 lowercase ASCII letters (whole words); else every id from 3
// up (ids 0-2 are usually unk/bos/eos). At least 3 * 64 ids are needed.
std::vector<int32_t> MqarTokenPool(const model::LlamaModel& model,
                                   const tokenizer::Tokenizer* tokenizer);

struct MqarOptions {
  int64_t context_length = 256;  // tokens per sample, BOS included
  int64_t num_pairs = 8;
  int64_t num_queries = 0;       // 0: every pair; else 1 .. num_pairs
  int64_t num_samples = 8;
  uint64_t seed = 0;
  // Keys, values and filler come from disjoint thirds of the pool (in its
  // order); see MqarTokenPool.
  std::vector<int32_t> pool;
  std::optional<int32_t> bos;    // first token when set
  // Optional delimiters ("k : v , k : v ,"): pretrained models recall far
  // better with them (SmolLM2-135M: ~0 without, ~50% with). With
  // kv_separator the query position is the separator after the key.
  std::optional<int32_t> kv_separator;    // e.g. the id of ":"
  std::optional<int32_t> pair_separator;  // e.g. the id of ","
};

// The single-token ids of ":" and "," (when each encodes to one token), for
// MqarOptions' separators.
void SetMqarSeparators(const tokenizer::Tokenizer& tokenizer, MqarOptions* options);

struct MqarSample {
  std::vector<int32_t> ids;             // context_length tokens
  std::vector<int64_t> query_positions; // index of each query key (or its separator) in ids
  std::vector<int32_t> answers;         // the value expected after it
};

// INVALID_ARGUMENT naming the option when the layout does not fit
// ((pairs + queries) * tokens per pair + bos > context_length) or the pool is too small.
absl::StatusOr<MqarSample> MakeMqarSample(const MqarOptions& options, int64_t index);

struct RecallResult {
  int64_t context_length = 0;
  int64_t num_pairs = 0;  // MQAR; 0 for passkey
  double depth = 0;       // passkey; 0 for MQAR
  int64_t trials = 0;     // queries (MQAR) or samples (passkey)
  int64_t correct = 0;
  double accuracy = 0;
};

absl::StatusOr<RecallResult> EvaluateMqar(const model::LlamaModel& model,
                                          const MqarOptions& options);

struct PasskeyOptions {
  int64_t length = 1024;  // prompt tokens (approximately: whole filler sentences)
  double depth = 0.5;     // 0 = needle at the start of the filler, 1 = at its end
  int64_t num_samples = 4;
  uint64_t seed = 0;
  int64_t max_new_tokens = 12;
};

struct PasskeySample {
  std::string passkey;        // 5 digits
  std::vector<int32_t> ids;   // the prompt
};

absl::StatusOr<PasskeySample> MakePasskeySample(const tokenizer::Tokenizer& tokenizer,
                                                const PasskeyOptions& options, int64_t index);

// The first maximal run of ASCII digits in `text`, or "".
std::string FirstNumber(std::string_view text);

// The longest prompt (plus answer) a recall task may give `model`: its
// max_position_embeddings when any layer is softmax (RoPE range and KV
// cache), unbounded for a fully recurrent student, whose state does not grow
// with the context: long-range recall is what such a model is tested for.
int64_t RecallContextLimit(const model::LlamaModel& model);

// INVALID_ARGUMENT when a prompt does not fit RecallContextLimit.
absl::StatusOr<RecallResult> EvaluatePasskey(const model::LlamaModel& model,
                                             const tokenizer::Tokenizer& tokenizer,
                                             const PasskeyOptions& options);

}  // namespace linearize::eval
