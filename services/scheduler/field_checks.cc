#include "services/scheduler/field_checks.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace linearize::scheduler {
namespace {

// Shows a user's value in a message without flooding it.
std::string Quoted(std::string_view s) {
  if (s.size() > 40) return absl::StrCat("\"", std::string(s.substr(0, 40)), "...\"");
  return absl::StrCat("\"", std::string(s), "\"");
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, surrogates and code points beyond U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status CheckLabels(const google::protobuf::Map<std::string, std::string>& labels,
                         const std::string& field) {
  if (labels.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most 64 labels, got ", labels.size()));
  }
  // Sorted, so the first bad key reported does not depend on map order.
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [key, value] : sorted) {
    bool ok = !key.empty() && key.size() <= 63 && absl::ascii_islower(key[0]);
    for (char c : key) {
      ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '.' || c == '-');
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": key ", Quoted(key),
          " must be 1 to 63 characters from [a-z0-9_.-] starting with a letter"));
    }
    if (value.size() > 255 || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[\"", key,
                                                     "\"]: value must be at most 255 bytes of "
                                                     "UTF-8, got ", value.size(), " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRequestId(std::string_view id, const std::string& field) {
  if (id.empty()) return absl::OkStatus();
  bool ok = id.size() <= 128;
  for (char c : id) {
    ok = ok && (absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '~' || c == ':' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be 1 to 128 characters from [A-Za-z0-9._~:-] (a UUID is recommended), got ",
        id.size() > 128 ? absl::StrCat(id.size(), " characters") : Quoted(id)));
  }
  return absl::OkStatus();
}

absl::Status CheckModelName(std::string_view name, const std::string& field) {
  bool ok = !name.empty() && name.size() <= 128;
  for (char c : name) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be 1 to 128 characters from [a-z0-9._-], got ",
        name.size() > 128 ? absl::StrCat(name.size(), " characters") : Quoted(name)));
  }
  return absl::OkStatus();
}

absl::Status CheckText(std::string_view text, size_t max_bytes, const std::string& field) {
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most ", max_bytes, " bytes, got ", text.size()));
  }
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be valid UTF-8"));
  }
  return absl::OkStatus();
}

absl::Status CheckId(std::string_view id, const std::string& field) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  bool ok = id.size() <= 64;
  for (char c : id) ok = ok && c > 0x20 && c < 0x7f;
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": not an id (ids are at most 64 printable ASCII characters)"));
  }
  return absl::OkStatus();
}

absl::Status CheckTimestamp(const google::protobuf::Timestamp& ts, const std::string& field) {
  // 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
  constexpr int64_t kMin = -62135596800, kMax = 253402300799;
  if (ts.seconds() < kMin || ts.seconds() > kMax || ts.nanos() < 0 || ts.nanos() > 999999999) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a valid timestamp"));
  }
  return absl::OkStatus();
}

}  // namespace linearize::scheduler
