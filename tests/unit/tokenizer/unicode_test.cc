// UTF-8 helpers, the byte-level alphabet, NFC and the regex wrapper.
#include <string>
#include <vector>

#include "common/tokenizer/byte_level.h"
#include "common/tokenizer/regex.h"
#include "common/tokenizer/unicode_nfc.h"
#include "common/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using testing::LoadFixtureJson;
using testing::Printable;

TEST(Utf8Test, RepairReplacesMaximalInvalidSubparts) {
  const std::string fffd = "\xEF\xBF\xBD";
  // Expectations are Python's bytes.decode("utf-8", errors="replace").
  EXPECT_EQ(RepairUtf8("ok"), "ok");
  EXPECT_EQ(RepairUtf8("\xC3"), fffd);
  EXPECT_EQ(RepairUtf8("\xE4\xB8"), fffd);
  EXPECT_EQ(RepairUtf8("\xF0\x9F\x98"), fffd);
  EXPECT_EQ(RepairUtf8("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(RepairUtf8("\xC0\xAF"), fffd + fffd);               // overlong
  EXPECT_EQ(RepairUtf8("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);
  EXPECT_EQ(RepairUtf8("a\xFF" "b\xE4\xB8\xAD"), "a" + fffd + "b\xE4\xB8\xAD");
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x91\x8D"));
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x91"));
}

TEST(Utf8Test, CompletePrefixHoldsBackOpenSequences) {
  EXPECT_EQ(CompleteUtf8Prefix("ab"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xE4\xB8"), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xF0\x9F\x91"), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xF0\x9F\x91\x8D"), 5u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xFF"), 2u);      // never valid: complete
  EXPECT_EQ(CompleteUtf8Prefix("a\xE4" "b"), 3u);  // interrupted: complete
}

TEST(ByteLevelTest, AlphabetIsGpt2sAndRoundTrips) {
  EXPECT_EQ(ByteToUnicode(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(ByteToUnicode('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(ByteToUnicode('A'), "A");
  EXPECT_EQ(ByteToUnicode(0xFF), "\xC3\xBF");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelDecodeToken(BytesToUnicode(all)), all);
  // A token with a character outside the alphabet is kept as its UTF-8.
  EXPECT_EQ(ByteLevelDecodeToken("<|\xE2\x96\x81|>"), "<|\xE2\x96\x81|>");
}

TEST(NfcTest, MatchesPythonUnicodedata) {
  const nlohmann::json fixture = LoadFixtureJson("nfc.json");
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(NormalizeNfc(text), c["nfc"].get<std::string>()) << Printable(text.substr(0, 60));
  }
}

TEST(RegexTest, FindAllSkipsEmptyMatchesAfterAMatch) {
  auto re = Regex::Compile("x*");
  ASSERT_TRUE(re.ok()) << re.status();
  std::vector<std::pair<size_t, size_t>> m;
  EXPECT_TRUE((*re)->FindAll("abxxc", &m));
  EXPECT_EQ(m, (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 1}, {2, 4}, {5, 5}}));
}

TEST(RegexTest, UnicodePropertiesAndErrors) {
  auto re = Regex::Compile(R"(\p{L}+|\p{N})");
  ASSERT_TRUE(re.ok()) << re.status();
  std::vector<std::pair<size_t, size_t>> m;
  EXPECT_TRUE((*re)->FindAll("h\xC3\xA9 \xD9\xA3", &m));  // "hé ٣"
  EXPECT_EQ(m, (std::vector<std::pair<size_t, size_t>>{{0, 3}, {4, 6}}));
  EXPECT_FALSE((*re)->FindAll("\xFF", &m));
  auto bad = Regex::Compile("(");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("offset"), std::string::npos);
}

}  // namespace
}  // namespace linearize::tokenizer
