// Internal helpers. This Abseil is built with its own absl::string_view (not
// std::string_view), so absl::StrCat and heterogeneous lookup in
// flat_hash_map need a bridge for std::string_view arguments.
#pragma once

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace linearize::tokenizer::internal {

inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline absl::string_view ToAbsl(const std::string& s) { return absl::string_view(s.data(), s.size()); }
inline absl::string_view ToAbsl(const char* s) { return absl::string_view(s); }
template <typename T>
const T& ToAbsl(const T& v) {
  return v;
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(ToAbsl(args)...);
}
template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  out->append(StrCat(args...));
}

// std::string keys looked up by std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>{}(s); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringHash, StringEq>;

// Replaces every `from` in `s` by `to`.
inline std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t at = from.empty() ? std::string_view::npos : s.find(from, pos);
    if (at == std::string_view::npos) break;
    out.append(s.substr(pos, at - pos));
    out.append(to);
    pos = at + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

}  // namespace linearize::tokenizer::internal
