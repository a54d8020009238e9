// Pieces of the tokenizer.json parser exposed for tests and tools.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/tokenizer/pre_tokenizer.h"

namespace linearize::tokenizer {

// Parses one "pre_tokenizer" object of tokenizer.json (null gives nullptr).
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizerJson(std::string_view json_text);

}  // namespace linearize::tokenizer
