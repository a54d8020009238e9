#include "common/tokenizer/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

struct CccRange {
  char32_t first, last;
  uint8_t ccc;
};
struct Decomposition {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct Composition {
  char32_t first, second, composite;
};

#include "common/tokenizer/unicode_nfc_data.inc"

// Hangul syllables compose and decompose algorithmically.
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

uint8_t CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCccRanges), std::end(kCccRanges), cp,
                             [](char32_t c, const CccRange& r) { return c < r.first; });
  if (it == std::begin(kCccRanges)) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void Decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = static_cast<int>(cp - kSBase);
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp,
                             [](const Decomposition& d, char32_t c) { return d.cp < c; });
  if (it != std::end(kDecompositions) && it->cp == cp) {
    out->insert(out->end(), kDecompositionData + it->offset,
                kDecompositionData + it->offset + it->length);
  } else {
    out->push_back(cp);
  }
}

// The primary composite of `a` + `b`, or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  auto it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions), a,
                             [](const Composition& c, char32_t x) { return c.first < x; });
  for (; it != std::end(kCompositions) && it->first == a; ++it) {
    if (it->second == b) return it->composite;
  }
  return 0;
}

}  // namespace

std::string NormalizeNfc(std::string_view text) {
  // Fast path: nothing at or above U+0300 means nothing decomposes,
  // reorders or composes.
  bool simple = true;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    if (b >= 0xCC) {  // lead bytes of U+0300 and above
      simple = false;
      break;
    }
  }
  if (simple) return std::string(text);

  std::vector<char32_t> cps;
  cps.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    char32_t cp;
    size_t n = DecodeUtf8(text, pos, &cp);
    if (n == 0) {  // not expected (input is valid); keep U+FFFD
      cp = 0xFFFD;
      n = 1;
    }
    Decompose(cp, &cps);
    pos += n;
  }
  // Canonical ordering: stable sort of each run of non-starters by class.
  std::vector<uint8_t> ccc(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) ccc[i] = CombiningClass(cps[i]);
  for (size_t i = 0; i < cps.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc[j] != 0) ++j;
    if (j - i > 1) {
      std::vector<std::pair<uint8_t, char32_t>> run;
      for (size_t k = i; k < j; ++k) run.emplace_back(ccc[k], cps[k]);
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      for (size_t k = i; k < j; ++k) {
        ccc[k] = run[k - i].first;
        cps[k] = run[k - i].second;
      }
    }
    i = j;
  }
  // Canonical composition.
  std::vector<char32_t> out;
  std::vector<uint8_t> out_ccc;
  out.reserve(cps.size());
  int64_t starter = -1;  // index in `out` of the last starter
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i];
    const uint8_t c = ccc[i];
    if (starter >= 0) {
      const uint8_t last_ccc = out_ccc.back();
      const bool last_is_starter = static_cast<size_t>(starter) == out.size() - 1;
      // Not blocked: the previous character is the starter itself, or has a
      // lower non-zero class than this one.
      if (last_is_starter || (last_ccc != 0 && last_ccc < c)) {
        const char32_t composite = Compose(out[starter], cp);
        if (composite != 0) {
          out[starter] = composite;
          continue;
        }
      }
    }
    out.push_back(cp);
    out_ccc.push_back(c);
    if (c == 0) starter = static_cast<int64_t>(out.size()) - 1;
  }
  std::string result;
  result.reserve(text.size());
  for (char32_t cp : out) AppendUtf8(cp, &result);
  return result;
}

}  // namespace linearize::tokenizer
