// Pre-tokenizers (Split behaviours, Digits, ByteLevel, Sequence, the Llama 3
// and Qwen2 regexes) against Hugging Face's pre_tokenize_str.
#include <string>
#include <vector>

#include "common/tokenizer/pre_tokenizer.h"
#include "common/tokenizer/tokenizer_json.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using testing::LoadFixtureJson;
using testing::Printable;

TEST(PreTokenizerTest, MatchesHuggingFace) {
  const nlohmann::json cases = LoadFixtureJson("pre_tokenizers.json");
  ASSERT_GE(cases.size(), 100u);
  for (const auto& c : cases) {
    auto pre = ParsePreTokenizerJson(c["config"].dump());
    ASSERT_TRUE(pre.ok()) << pre.status() << " " << c["config"].dump();
    ASSERT_NE(*pre, nullptr);
    std::vector<std::string> pieces = {c["text"].get<std::string>()};
    (*pre)->Apply(&pieces);
    EXPECT_EQ(pieces, c["pieces"].get<std::vector<std::string>>())
        << c["config"].dump() << " on " << Printable(c["text"].get<std::string>());
  }
}

TEST(PreTokenizerTest, NullConfigIsNoPreTokenizer) {
  auto pre = ParsePreTokenizerJson("null");
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(*pre, nullptr);
}

TEST(PreTokenizerTest, PathologicalRegexTerminates) {
  // Catastrophic backtracking hits PCRE2's match limit instead of hanging;
  // the unmatched rest stays one piece.
  auto pre = MakeSplit("(a+)+$", true, SplitBehavior::kIsolated, false);
  ASSERT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string> pieces = {std::string(40, 'a') + "b"};
  (*pre)->Apply(&pieces);
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, std::string(40, 'a') + "b");
}

TEST(PreTokenizerTest, UnknownBehaviorIsAnError) {
  EXPECT_FALSE(ParseSplitBehavior("Sideways").ok());
  EXPECT_EQ(ParseSplitBehavior("MergedWithNext").value(), SplitBehavior::kMergedWithNext);
}

}  // namespace
}  // namespace linearize::tokenizer
