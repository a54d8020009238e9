#include "common/tokenizer/byte_level.h"

#include <array>

#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

struct ByteMap {
  std::array<char32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;
  std::array<int, 324> from_cp;  // all mapped code points are below 324

  ByteMap() {
    from_cp.fill(-1);
    // Printable bytes map to themselves; the rest to 256, 257, ... in order.
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      AppendUtf8(to_cp[b], &to_utf8[b]);
      from_cp[to_cp[b]] = b;
    }
  }
};

const ByteMap& Map() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

}  // namespace

std::string_view ByteToUnicode(unsigned char byte) { return Map().to_utf8[byte]; }

std::string BytesToUnicode(std::string_view text) {
  const ByteMap& map = Map();
  std::string out;
  out.reserve(text.size() * 2);
  for (char c : text) out.append(map.to_utf8[static_cast<unsigned char>(c)]);
  return out;
}

std::optional<unsigned char> UnicodeToByte(char32_t cp) {
  const ByteMap& map = Map();
  if (cp >= map.from_cp.size() || map.from_cp[cp] < 0) return std::nullopt;
  return static_cast<unsigned char>(map.from_cp[cp]);
}

std::string ByteLevelDecodeToken(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(token, pos, &cp);
    if (n == 0) return std::string(token);
    const auto byte = UnicodeToByte(cp);
    if (!byte) return std::string(token);
    out.push_back(static_cast<char>(*byte));
    pos += n;
  }
  return out;
}

}  // namespace linearize::tokenizer
