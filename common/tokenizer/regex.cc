#include "common/tokenizer/regex.h"

#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

// Bounds that keep a pathological pattern (a fuzzed tokenizer.json) from
// running for long: backtracking steps per match attempt (scaled with the
// text still to search, since the tokenizer patterns legitimately scan a
// whole whitespace run; so a whole FindAll stays near-linear for them and
// bounded for the rest), recursion depth and heap in KiB.
uint32_t MatchLimit(size_t remaining) {
  const size_t limit = 100'000 + 32 * remaining;
  return static_cast<uint32_t>(std::min<size_t>(limit, 20'000'000));
}
constexpr uint32_t kDepthLimit = 100'000;
constexpr uint32_t kHeapLimitKib = 64 * 1024;

// One JIT stack per thread, grown on demand up to 4 MiB.
pcre2_jit_stack* ThreadJitStack() {
  struct Holder {
    pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 4 * 1024 * 1024, nullptr);
    ~Holder() {
      if (stack != nullptr) pcre2_jit_stack_free(stack);
    }
  };
  thread_local Holder holder;
  return holder.stack;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(internal::StrCat("regex does not compile at offset ",
                                                   error_offset, ": ",
                                                   reinterpret_cast<const char*>(message)));
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(pattern);
  regex->code_ = code;
  regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return regex;
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool Regex::FindAll(std::string_view text,
                    std::vector<std::pair<size_t, size_t>>* matches) const {
  if (!IsValidUtf8(text)) return false;
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  if (data == nullptr || context == nullptr) {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    return false;
  }
  pcre2_set_depth_limit(context, kDepthLimit);
  pcre2_set_heap_limit(context, kHeapLimitKib);
  if (jit_) pcre2_jit_stack_assign(context, nullptr, ThreadJitStack());

  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t search_from = 0;
  bool have_last_end = false;
  size_t last_match_end = 0;
  bool ok = true;
  while (search_from <= text.size()) {
    pcre2_set_match_limit(context, MatchLimit(text.size() - search_from));
    // The text was validated once above; do not re-check it on every call.
    int rc = pcre2_match(code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK, data,
                         context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, text.size(), search_from,
                       PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, context);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      ok = false;
      break;
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    size_t start = ovector[0], end = ovector[1];
    if (start > end || end > text.size()) {  // \K can produce these
      ok = false;
      break;
    }
    if (start == end && have_last_end && end == last_match_end) {
      // Step over one character and search again.
      char32_t cp;
      const size_t n = search_from < text.size() ? DecodeUtf8(text, search_from, &cp) : 1;
      search_from += n == 0 ? 1 : n;
      continue;
    }
    matches->emplace_back(start, end);
    have_last_end = true;
    last_match_end = end;
    search_from = end;
  }
  pcre2_match_data_free(data);
  pcre2_match_context_free(context);
  return ok;
}

}  // namespace linearize::tokenizer
