// Byte-level BPE from tokenizer.json and from GGUF against ids produced by
// Hugging Face `tokenizers` (scripts/fixtures/make_tokenizer_fixtures.py).
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/io/gguf.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/unicode_nfc.h"
#include "common/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using ::testing::HasSubstr;
using testing::FixturePath;
using testing::Ids;
using testing::LoadFixtureJson;
using testing::Printable;
using testing::ReadFileOrDie;

enum class RoundTrip { kExact, kNfc, kNone };

void ExpectCases(const Tokenizer& tok, const nlohmann::json& cases,
                 RoundTrip round_trip = RoundTrip::kExact) {
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> ids = Ids(c["ids"]);
    EXPECT_EQ(tok.Encode(text), ids) << "text: " << Printable(text);
    if (round_trip != RoundTrip::kNone) {
      EXPECT_EQ(tok.Decode(tok.Encode(text)),
                round_trip == RoundTrip::kNfc ? NormalizeNfc(text) : text)
          << "round trip of " << Printable(text);
    }
    EXPECT_EQ(tok.Encode(text, /*add_special_tokens=*/true), Ids(c["ids_with_special"]))
        << "text: " << Printable(text);
    // Hugging Face returns text (invalid bytes as U+FFFD); Decode returns
    // the bytes.
    EXPECT_EQ(RepairUtf8(tok.Decode(ids)), c["decoded"].get<std::string>())
        << "text: " << Printable(text);
    if (c.contains("decoded_skip_special")) {
      EXPECT_EQ(RepairUtf8(tok.Decode(ids, /*skip_special_tokens=*/true)),
                c["decoded_skip_special"].get<std::string>())
          << "text: " << Printable(text);
    }
  }
}

std::unique_ptr<Tokenizer> LoadJsonOrDie(const std::string& relative) {
  auto tok = LoadTokenizerJson(FixturePath(relative));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

std::unique_ptr<Tokenizer> LoadGgufOrDie(const std::string& relative) {
  auto gguf = io::GgufFile::Open(FixturePath(relative));
  EXPECT_TRUE(gguf.ok()) << gguf.status();
  if (!gguf.ok()) return nullptr;
  auto tok = TokenizerFromGguf(**gguf);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

TEST(BpeTokenizerTest, Llama3JsonMatchesHuggingFace) {
  auto tok = LoadJsonOrDie("llama3/tokenizer.json");
  ASSERT_NE(tok, nullptr);
  ExpectCases(*tok, LoadFixtureJson("llama3/expected.json")["cases"]);
  // bos/eos from tokenizer_config.json.
  EXPECT_EQ(tok->bos_id(), tok->TokenId("<|begin_of_text|>"));
  EXPECT_EQ(tok->eos_id(), tok->TokenId("<|eot_id|>"));
  ASSERT_TRUE(tok->bos_id().has_value());
  EXPECT_TRUE(tok->IsSpecial(*tok->bos_id()));
  EXPECT_EQ(tok->TokenBytes(*tok->TokenId("<|eot_id|>")), "<|eot_id|>");
  EXPECT_FALSE(tok->IsSpecial(*tok->TokenId("a")));
  EXPECT_EQ(tok->TokenBytes(*tok->TokenId("\xC4\xA0")), " ");  // "Ġ"
  EXPECT_EQ(tok->vocab_size(), 1511);
  EXPECT_FALSE(tok->TokenId("no such token").has_value());
  EXPECT_EQ(tok->TokenBytes(-1), "");
  EXPECT_EQ(tok->TokenBytes(1 << 30), "");
}

TEST(BpeTokenizerTest, Llama3IgnoreMergesTakesVocabularyPiecesWhole) {
  auto tok = LoadJsonOrDie("llama3/tokenizer.json");
  ASSERT_NE(tok, nullptr);
  // "Ġzzqq" is in the vocabulary but no merge produces it.
  EXPECT_EQ(tok->Encode(" zzqq"), std::vector<int32_t>{*tok->TokenId("\xC4\xA0zzqq")});
}

TEST(BpeTokenizerTest, Llama3GgufMatchesHuggingFace) {
  auto tok = LoadGgufOrDie("llama3/tokenizer.gguf");
  ASSERT_NE(tok, nullptr);
  ExpectCases(*tok, LoadFixtureJson("llama3/expected.json")["cases"]);
  EXPECT_EQ(tok->bos_id(), tok->TokenId("<|begin_of_text|>"));
  EXPECT_EQ(tok->eos_id(), tok->TokenId("<|eot_id|>"));
}

TEST(BpeTokenizerTest, Qwen2JsonMatchesHuggingFace) {
  auto tok = LoadJsonOrDie("qwen2/tokenizer.json");
  ASSERT_NE(tok, nullptr);
  ExpectCases(*tok, LoadFixtureJson("qwen2/expected.json")["cases"], RoundTrip::kNfc);
  EXPECT_EQ(tok->eos_id(), tok->TokenId("<|im_end|>"));
  // NFC: the decomposed and precomposed spellings encode alike.
  EXPECT_EQ(tok->Encode("e\xCC\x81"), tok->Encode("\xC3\xA9"));
}

TEST(BpeTokenizerTest, Qwen2GgufMatchesHuggingFace) {
  auto tok = LoadGgufOrDie("qwen2/tokenizer.gguf");
  ASSERT_NE(tok, nullptr);
  ExpectCases(*tok, LoadFixtureJson("qwen2/expected.json")["cases"], RoundTrip::kNfc);
}

TEST(BpeTokenizerTest, AddedTokenFlagsMatchHuggingFace) {
  // The qwen2 tokenizer with extra added tokens using lstrip, rstrip,
  // single_word and normalized.
  const nlohmann::json fixture = LoadFixtureJson("added_flags.json");
  nlohmann::json j = nlohmann::json::parse(ReadFileOrDie(FixturePath("qwen2/tokenizer.json")));
  j["added_tokens"] = fixture["added_tokens"];
  auto tok = ParseTokenizerJson(j.dump(), "added_flags.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Decoding "café" (normalized token content) goes through the ByteLevel
  // decoder, which reads "é" as byte 0xE9: no exact round trip.
  ExpectCases(**tok, fixture["cases"], RoundTrip::kNone);
}

TEST(BpeTokenizerTest, BosEosWithoutConfigComeFromTemplateAndNames) {
  auto tok = ParseTokenizerJson(ReadFileOrDie(FixturePath("llama3/tokenizer.json")), "t.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bos_id(), (*tok)->TokenId("<|begin_of_text|>"));
  EXPECT_EQ((*tok)->eos_id(), (*tok)->TokenId("<|end_of_text|>"));
}

TEST(BpeTokenizerTest, InvalidUtf8IsRepairedBeforeEncoding) {
  auto tok = LoadJsonOrDie("qwen2/tokenizer.json");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("a\xFF b\xE4\xB8"), tok->Encode("a\xEF\xBF\xBD b\xEF\xBF\xBD"));
}

TEST(BpeTokenizerTest, ConcurrentEncodesAgree) {
  auto tok = LoadJsonOrDie("llama3/tokenizer.json");
  ASSERT_NE(tok, nullptr);
  const nlohmann::json cases = LoadFixtureJson("llama3/expected.json")["cases"];
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (const auto& c : cases) {
          if (tok->Encode(c["text"].get<std::string>()) != Ids(c["ids"])) ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

// A minimal valid tokenizer.json with `patch` applied.
std::string MinimalJson(const nlohmann::json& patch) {
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}},
        {"merges", nlohmann::json::array({"a b"})}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  j.merge_patch(patch);
  return j.dump();
}

TEST(BpeTokenizerTest, MinimalJsonEncodes) {
  auto tok = ParseTokenizerJson(MinimalJson(nlohmann::json::object()), "min.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("abab"), (std::vector<int32_t>{2, 2}));
  // Characters missing from the vocabulary (no unk token) are dropped, and
  // their neighbours merge (as in Hugging Face).
  EXPECT_EQ((*tok)->Encode("acb"), (std::vector<int32_t>{2}));
  EXPECT_EQ((*tok)->Encode("ba"), (std::vector<int32_t>{1, 0}));
  // The legacy and the [left, right] merge spellings agree.
  auto pairs = ParseTokenizerJson(
      MinimalJson({{"model", {{"merges", nlohmann::json::array({{"a", "b"}})}}}}), "min.json");
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_EQ((*pairs)->Encode("abab"), (std::vector<int32_t>{2, 2}));
}

TEST(BpeTokenizerTest, ByteFallbackAndUnknownToken) {
  nlohmann::json j = nlohmann::json::parse(MinimalJson({{"pre_tokenizer", nullptr}}));
  j["model"]["vocab"] = {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}};
  j["model"]["merges"] = nlohmann::json::array();
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = true;
  auto with_bytes = ParseTokenizerJson(j.dump(), "bf.json");
  ASSERT_TRUE(with_bytes.ok()) << with_bytes.status();
  EXPECT_EQ((*with_bytes)->Encode("a\xC3\xA9z"), (std::vector<int32_t>{1, 2, 3, 0}));
  j["model"]["byte_fallback"] = false;
  j["model"]["fuse_unk"] = true;
  auto fused = ParseTokenizerJson(j.dump(), "unk.json");
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ((*fused)->Encode("azzaz"), (std::vector<int32_t>{1, 0, 1, 0}));
  j["model"]["fuse_unk"] = false;
  auto unfused = ParseTokenizerJson(j.dump(), "unk.json");
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_EQ((*unfused)->Encode("azz"), (std::vector<int32_t>{1, 0, 0}));
}

TEST(BpeTokenizerTest, ErrorsNameTheFileAndField) {
  struct Case {
    std::string json;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"{not json", absl::StatusCode::kInvalidArgument, "not valid JSON"},
      {"[]", absl::StatusCode::kInvalidArgument, "must be a JSON object"},
      {MinimalJson({{"model", {{"type", "WordPiece"}}}}), absl::StatusCode::kUnimplemented,
       "model.type"},
      {MinimalJson({{"model", {{"merges", nlohmann::json::array({"a c"})}}}}),
       absl::StatusCode::kInvalidArgument, "merge 0"},
      {MinimalJson({{"model", {{"merges", nlohmann::json::array({"ab"})}}}}),
       absl::StatusCode::kInvalidArgument, "model.merges[0]"},
      {MinimalJson({{"model", {{"vocab", {{"a", -1}}}}}}), absl::StatusCode::kInvalidArgument,
       "model.vocab[\"a\"]"},
      {MinimalJson({{"model", {{"vocab", {{"c", 2000000000}}}}}}),
       absl::StatusCode::kInvalidArgument, "too sparse"},
      {MinimalJson({{"pre_tokenizer", {{"type", "Whitespace"}}}}),
       absl::StatusCode::kUnimplemented, "pre_tokenizer.type"},
      {MinimalJson({{"pre_tokenizer",
                     {{"type", "Split"}, {"pattern", {{"Regex", "("}}}, {"behavior", "Isolated"}}}}),
       absl::StatusCode::kInvalidArgument, "pre_tokenizer.pattern"},
      {MinimalJson({{"pre_tokenizer",
                     {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}}}}),
       absl::StatusCode::kInvalidArgument, "pre_tokenizer.behavior"},
      {MinimalJson({{"decoder", nullptr}}), absl::StatusCode::kUnimplemented, "decoder"},
      {MinimalJson({{"decoder", {{"type", "WordPiece"}}}}), absl::StatusCode::kUnimplemented,
       "decoder.type"},
      {MinimalJson({{"normalizer", {{"type", "Lowercase"}}}}), absl::StatusCode::kUnimplemented,
       "normalizer.type"},
      {MinimalJson({{"added_tokens", {{{"id", 5}}}}}), absl::StatusCode::kInvalidArgument,
       "added_tokens[0].content"},
      {MinimalJson({{"post_processor", {{"type", "TemplateProcessing"},
                                        {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}},
                                        {"special_tokens", nlohmann::json::object()}}}}),
       absl::StatusCode::kInvalidArgument, "post_processor.special_tokens[\"<s>\"]"},
  };
  for (const Case& c : cases) {
    auto tok = ParseTokenizerJson(c.json, "bad.json");
    ASSERT_FALSE(tok.ok()) << c.json;
    EXPECT_EQ(tok.status().code(), c.code) << tok.status();
    EXPECT_THAT(std::string(tok.status().message()), HasSubstr("bad.json")) << tok.status();
    EXPECT_THAT(std::string(tok.status().message()), HasSubstr(c.message)) << tok.status();
  }
}

TEST(BpeTokenizerTest, LoadMissingFileIsNotFound) {
  auto tok = LoadTokenizerJson("/nonexistent/tokenizer.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
}

TEST(BpeTokenizerTest, UnknownGgufPreTokenizerListsKnownOnes) {
  auto gguf = io::GgufFile::Open(FixturePath("bad_pre.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto tok = TokenizerFromGguf(**gguf);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("\"no-such-pre\""));
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("smollm"));
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("llama-bpe"));
}

}  // namespace
}  // namespace linearize::tokenizer
