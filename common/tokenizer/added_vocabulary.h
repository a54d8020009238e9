// Added tokens (special and not) of a tokenizer: found in the text before
// anything else, with the matching rules of Hugging Face's AddedVocabulary
// (leftmost-longest; single_word, lstrip, rstrip; "normalized" tokens are
// matched after normalization).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace linearize::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A run of text, or an added token ([begin, end) of the text it covers,
// including whitespace that lstrip/rstrip absorbed).
struct TextSegment {
  int32_t token_id;  // -1 for ordinary text
  size_t begin, end;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  explicit AddedVocabulary(std::vector<AddedToken> tokens);

  // Splits `text` at the added tokens whose `normalized` flag equals
  // `normalized`. Empty text segments are not emitted.
  std::vector<TextSegment> Split(std::string_view text, bool normalized) const;
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over the token contents.
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;  // index into tokens_
  };
  struct Trie {
    std::vector<Node> nodes{Node{}};
    std::array<bool, 256> first_byte{};
    void Insert(std::string_view s, int32_t token);
    // Longest token starting at text[pos], or -1.
    int32_t LongestAt(std::string_view text, size_t pos, size_t* length) const;
  };
  std::vector<TextSegment> SplitWith(const Trie& trie, std::string_view text) const;

  std::vector<AddedToken> tokens_;
  Trie raw_, normalized_;
};

}  // namespace linearize::tokenizer
