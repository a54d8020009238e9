#include "common/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <cctype>
#include <memory>

#include "common/tokenizer/regex.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

// Last / first code point of a string (0 if none).
char32_t LastCodePoint(std::string_view s) {
  if (s.empty()) return 0;
  size_t pos = s.size() - 1;
  while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
  char32_t cp = 0;
  return DecodeUtf8(s, pos, &cp) != 0 ? cp : 0;
}

char32_t FirstCodePoint(std::string_view s) {
  char32_t cp = 0;
  return DecodeUtf8(s, 0, &cp) != 0 ? cp : 0;
}

// A "word" character for single_word tokens: \w in Unicode mode.
bool IsWordChar(char32_t cp) {
  if (cp == 0) return false;
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) || cp == '_';
  static const Regex* word = [] {
    auto r = Regex::Compile(R"(^\w$)");
    return r.ok() ? r->release() : nullptr;
  }();
  if (word == nullptr) return false;
  std::string s;
  AppendUtf8(cp, &s);
  std::vector<std::pair<size_t, size_t>> m;
  word->FindAll(s, &m);
  return !m.empty();
}

}  // namespace

void AddedVocabulary::Trie::Insert(std::string_view s, int32_t token) {
  int32_t node = 0;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    int32_t next = -1;
    for (const auto& [byte, child] : nodes[node].children) {
      if (byte == c) next = child;
    }
    if (next < 0) {
      next = static_cast<int32_t>(nodes.size());
      nodes[node].children.emplace_back(c, next);
      nodes.emplace_back();
    }
    node = next;
  }
  // The first token with a given content wins; later duplicates are ignored.
  if (nodes[node].token < 0) nodes[node].token = token;
  first_byte[static_cast<unsigned char>(s[0])] = true;
}

int32_t AddedVocabulary::Trie::LongestAt(std::string_view text, size_t pos,
                                         size_t* length) const {
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    int32_t next = -1;
    for (const auto& [byte, child] : nodes[node].children) {
      if (byte == c) {
        next = child;
        break;
      }
    }
    if (next < 0) break;
    node = next;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      *length = i + 1 - pos;
    }
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    (tokens_[i].normalized ? normalized_ : raw_).Insert(tokens_[i].content, static_cast<int32_t>(i));
  }
}

std::vector<TextSegment> AddedVocabulary::Split(std::string_view text, bool normalized) const {
  return SplitWith(normalized ? normalized_ : raw_, text);
}

std::vector<TextSegment> AddedVocabulary::SplitWith(const Trie& trie,
                                                    std::string_view text) const {
  std::vector<TextSegment> out;
  size_t emitted = 0;  // end of what has been emitted
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t length = 0;
    const int32_t index = trie.LongestAt(text, pos, &length);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos, stop = pos + length;
    pos = stop;  // the search resumes after the match, kept or not
    if (token.single_word) {
      const bool start_ok = start == 0 || !IsWordChar(LastCodePoint(text.substr(0, start)));
      const bool stop_ok = stop == text.size() || !IsWordChar(FirstCodePoint(text.substr(stop)));
      if (!start_ok || !stop_ok) continue;
    }
    if (token.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t p = s - 1;
        while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
        char32_t cp = 0;
        if (DecodeUtf8(text, p, &cp) == 0 || !IsUnicodeWhitespace(cp)) break;
        s = p;
      }
      start = std::max(s, emitted);
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        char32_t cp = 0;
        const size_t n = DecodeUtf8(text, stop, &cp);
        if (n == 0 || !IsUnicodeWhitespace(cp)) break;
        stop += n;
      }
      // Hugging Face resumes right after the token itself; resuming after
      // the stripped whitespace keeps segments from overlapping.
      pos = std::max(pos, stop);
    }
    if (emitted < start) out.push_back(TextSegment{-1, emitted, start});
    start = std::max(start, emitted);
    out.push_back(TextSegment{token.id, start, stop});
    emitted = stop;
  }
  if (emitted < text.size()) out.push_back(TextSegment{-1, emitted, text.size()});
  return out;
}

}  // namespace linearize::tokenizer
