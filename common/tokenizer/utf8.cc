#include "common/tokenizer/utf8.h"

#include <cstdint>

namespace linearize::tokenizer {
namespace {

// Length of the longest prefix of s[pos..] that is a valid start of a UTF-8
// sequence (Unicode's "maximal subpart"), and whether it is complete.
struct Prefix {
  size_t valid;   // bytes that are consistent with a well-formed sequence
  size_t needed;  // total bytes of the sequence its lead byte announces
};

Prefix ScanSequence(std::string_view s, size_t pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) return {1, 1};
  size_t needed;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    needed = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    needed = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    needed = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, 1};
  }
  size_t valid = 1;
  for (size_t i = 1; i < needed && pos + i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[pos + i]);
    const uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
    ++valid;
  }
  return {valid, needed};
}

}  // namespace

size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp) {
  if (pos >= s.size()) return 0;
  const Prefix p = ScanSequence(s, pos);
  if (p.valid == 0 || p.valid < p.needed) return 0;
  const auto b0 = static_cast<uint8_t>(s[pos]);
  char32_t c;
  switch (p.needed) {
    case 1: c = b0; break;
    case 2: c = b0 & 0x1F; break;
    case 3: c = b0 & 0x0F; break;
    default: c = b0 & 0x07; break;
  }
  for (size_t i = 1; i < p.needed; ++i) c = (c << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
  *cp = c;
  return p.needed;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValidUtf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t cp;
    const size_t n = DecodeUtf8(s, pos, &cp);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string RepairUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    const Prefix p = ScanSequence(s, pos);
    if (p.valid != 0 && p.valid == p.needed) {
      out.append(s.substr(pos, p.valid));
      pos += p.valid;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += p.valid == 0 ? 1 : p.valid;
    }
  }
  return out;
}

size_t CompleteUtf8Prefix(std::string_view s) {
  // Only the last three bytes can start a sequence that is still open.
  const size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t pos = from; pos < s.size(); ++pos) {
    const auto b = static_cast<uint8_t>(s[pos]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte
    const Prefix p = ScanSequence(s, pos);
    if (p.valid != 0 && p.valid < p.needed && pos + p.valid == s.size()) return pos;
  }
  return s.size();
}

bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace linearize::tokenizer
