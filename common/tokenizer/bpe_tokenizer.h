// The byte-level BPE Tokenizer assembled from its parts (normalizer, added
// tokens, pre-tokenizer, BPE model, post-processor ids). The tokenizer.json
// and GGUF loaders both build one.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/added_vocabulary.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/normalizer.h"
#include "common/tokenizer/pre_tokenizer.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::tokenizer {

struct BpeTokenizerParts {
  std::string source;                          // file name, for messages
  std::unique_ptr<Normalizer> normalizer;      // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer; // may be null
  std::unique_ptr<BpeModel> model;
  std::vector<AddedToken> added_tokens;
  // What add_special_tokens puts around one sequence.
  std::vector<int32_t> prefix_ids, suffix_ids;
  std::optional<int32_t> bos_id, eos_id;
};

// Checks ids (non-negative, not too sparse: at most 4x the token count plus
// 1024) and builds the id tables. Decoding is ByteLevel.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(BpeTokenizerParts parts);

}  // namespace linearize::tokenizer
