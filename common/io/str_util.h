// StrCat that also takes std::string_view: this Abseil is built with its own
// absl::string_view, which absl::StrCat requires. Internal to linearize_io.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace linearize::io::internal {

inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
template <typename T>
const T& ToAbsl(const T& v) {
  return v;
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(ToAbsl(args)...);
}

}  // namespace linearize::io::internal
