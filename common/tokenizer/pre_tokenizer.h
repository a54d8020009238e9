// Pre-tokenizers: split text into the pieces that BPE encodes one by one,
// with the semantics of Hugging Face `tokenizers` (ByteLevel, Split, Digits,
// Sequence). Pieces that ByteLevel has seen are in the byte-level alphabet.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/regex.h"

namespace linearize::tokenizer {

// What a split does with the text its pattern matches.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

// The pre-tokenizer regexes of the supported models.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their finer split; empty pieces are dropped.
  virtual void Apply(std::vector<std::string>* pieces) const = 0;
};

// Split(pattern, behavior, invert). A literal (non-regex) pattern is escaped.
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeSplit(std::string_view pattern, bool is_regex,
                                                        SplitBehavior behavior, bool invert);
// Digits: each Unicode number character alone, or runs of them.
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeDigits(bool individual_digits);
// ByteLevel: optional leading space per piece, optional GPT-2 regex split,
// then every byte mapped to its byte-level character.
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeByteLevel(bool add_prefix_space,
                                                            bool use_regex);
std::unique_ptr<PreTokenizer> MakeSequence(std::vector<std::unique_ptr<PreTokenizer>> steps);

}  // namespace linearize::tokenizer
