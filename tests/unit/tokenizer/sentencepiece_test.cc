// SentencePiece: libsentencepiece behind the Tokenizer interface, and the
// score-driven BPE of GGUF "llama" tokenizers, against the sentencepiece
// Python package's ids for the same model.
#include <memory>
#include <string>

#include "common/io/gguf.h"
#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using testing::FixturePath;
using testing::Ids;
using testing::LoadFixtureJson;
using testing::Printable;

void ExpectSentencePieceCases(const Tokenizer& tok) {
  const nlohmann::json expected = LoadFixtureJson("sentencepiece/expected.json");
  ASSERT_FALSE(expected["cases"].empty());
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tok.Encode(text), Ids(c["ids"])) << "text: " << Printable(text);
    EXPECT_EQ(tok.Decode(tok.Encode(text)), text) << "round trip of " << Printable(text);
    EXPECT_EQ(tok.Encode(text, true), Ids(c["ids_with_special"])) << "text: " << Printable(text);
    EXPECT_EQ(tok.Decode(Ids(c["ids"])), c["decoded"].get<std::string>())
        << "text: " << Printable(text);
  }
  for (const auto& c : expected["special_cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tok.Encode(text), Ids(c["ids"])) << "text: " << Printable(text);
  }
}

void ExpectSpecials(const Tokenizer& tok) {
  EXPECT_EQ(tok.vocab_size(), 1000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.TokenId("<s>"), 1);
  EXPECT_EQ(tok.TokenId("<unk>"), 0);
  EXPECT_FALSE(tok.TokenId("definitely not a piece").has_value());
  EXPECT_TRUE(tok.IsSpecial(1));
  EXPECT_TRUE(tok.IsSpecial(0));
  EXPECT_EQ(tok.TokenBytes(1), "<s>");
  const std::optional<int32_t> newline = tok.TokenId("<0x0A>");
  ASSERT_TRUE(newline.has_value());
  EXPECT_EQ(tok.TokenBytes(*newline), "\n");
  EXPECT_FALSE(tok.IsSpecial(*newline));
  // Decode drops the "▁" prefix the encoder added, keeps specials unless
  // asked not to.
  const std::vector<int32_t> ids = tok.Encode("Hello world", true);
  EXPECT_EQ(tok.Decode(ids, true), "Hello world");
  EXPECT_EQ(tok.Decode(ids), "<s> Hello world");
}

TEST(SentencePieceTest, LibraryMatchesPythonSentencePiece) {
  auto tok = LoadSentencePiece(FixturePath("sentencepiece/tokenizer.model"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectSentencePieceCases(**tok);
  ExpectSpecials(**tok);
}

TEST(SentencePieceTest, GgufLlamaTokenizerMatchesPythonSentencePiece) {
  auto gguf = io::GgufFile::Open(FixturePath("sentencepiece/tokenizer.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto tok = TokenizerFromGguf(**gguf);
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectSentencePieceCases(**tok);
  ExpectSpecials(**tok);
}

TEST(SentencePieceTest, MissingModelIsAnError) {
  auto tok = LoadSentencePiece("/nonexistent/tokenizer.model");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(std::string(tok.status().message()).find("/nonexistent/tokenizer.model"),
            std::string::npos);
}

}  // namespace
}  // namespace linearize::tokenizer
