// PCRE2-backed regular expressions with the match iteration of the Oniguruma
// / Rust regex engines that Hugging Face `tokenizers` uses. Patterns are
// compiled with UTF and UCP, so \p{L}, \p{N}, \s and \w are Unicode-aware.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace linearize::tokenizer {

class Regex {
 public:
  // INVALID_ARGUMENT (with PCRE2's message and offset) if `pattern` does not
  // compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches in valid UTF-8 `text` as [start, end) byte
  // offsets, left to right. An empty match right where the previous match
  // ended is skipped (Rust `find_iter` semantics). Returns false (with the
  // matches found so far) if the match limits were hit or `text` is not
  // valid UTF-8; thread-safe.
  bool FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace linearize::tokenizer
