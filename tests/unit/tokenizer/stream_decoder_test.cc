// StreamDecoder emits whole UTF-8 characters only.
#include <memory>
#include <string>

#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using testing::FixturePath;

std::unique_ptr<Tokenizer> Llama3() {
  auto tok = LoadTokenizerJson(FixturePath("llama3/tokenizer.json"));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

TEST(StreamDecoderTest, PiecesAreWholeCharactersAndAddUpToTheText) {
  auto tok = Llama3();
  ASSERT_NE(tok, nullptr);
  const std::string text =
      "Emoji 👨‍👩‍👧‍👦 🇫🇷 🫠, 中文测试 한국어 café\n日本語のテキスト";
  const std::vector<int32_t> ids = tok->Encode(text);
  StreamDecoder stream(*tok);
  std::string joined;
  int held_back = 0;
  for (int32_t id : ids) {
    const std::string piece = stream.Push(id);
    EXPECT_TRUE(IsValidUtf8(piece)) << testing::Printable(piece);
    if (piece.empty() || piece != tok->TokenBytes(id)) ++held_back;
    joined += piece;
  }
  joined += stream.Flush();
  EXPECT_EQ(joined, text);
  // The tiny vocabulary splits these characters across tokens.
  EXPECT_GT(held_back, 0);
}

TEST(StreamDecoderTest, SkipsSpecialTokensUnlessAsked) {
  auto tok = Llama3();
  ASSERT_NE(tok, nullptr);
  const std::vector<int32_t> ids = tok->Encode("<|start_header_id|>hi<|eot_id|>");
  StreamDecoder skip(*tok);
  StreamDecoder keep(*tok, /*skip_special_tokens=*/false);
  std::string a, b;
  for (int32_t id : ids) {
    a += skip.Push(id);
    b += keep.Push(id);
  }
  EXPECT_EQ(a + skip.Flush(), "hi");
  EXPECT_EQ(b + keep.Flush(), "<|start_header_id|>hi<|eot_id|>");
}

TEST(StreamDecoderTest, IncompleteAndInvalidBytesBecomeReplacementCharacters) {
  auto tok = Llama3();
  ASSERT_NE(tok, nullptr);
  // Byte-level tokens for single bytes: "ä" is 0xE4, "¸" is 0xB8 (bytes
  // 0xE4 0xB8 start a 3-byte character), "ÿ" is 0xFF (never valid).
  const auto e4 = tok->TokenId("\xC3\xA4");
  const auto b8 = tok->TokenId("\xC2\xB8");
  const auto ff = tok->TokenId("\xC3\xBF");
  const auto a = tok->TokenId("a");
  ASSERT_TRUE(e4 && b8 && ff && a);
  StreamDecoder stream(*tok);
  EXPECT_EQ(stream.Push(*e4), "");
  EXPECT_EQ(stream.Push(*b8), "");
  EXPECT_EQ(stream.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.Push(*ff), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.Push(*e4), "");
  EXPECT_EQ(stream.Push(*a), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(stream.Flush(), "");
}

}  // namespace
}  // namespace linearize::tokenizer
