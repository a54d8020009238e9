// Chat formats against transformers' apply_chat_template renderings of the
// models' Jinja templates (tests/fixtures/tokenizer/chat_templates.json).
#include <memory>
#include <string>
#include <vector>

#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_util.h"

namespace linearize::tokenizer {
namespace {

using testing::FixturePath;
using testing::LoadFixtureJson;

std::unique_ptr<Tokenizer> LoadOrDie(const std::string& relative) {
  auto tok = LoadTokenizerJson(FixturePath(relative));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

TEST(ChatTemplateTest, RendersLikeTransformers) {
  auto tok = LoadOrDie("llama3/tokenizer.json");
  ASSERT_NE(tok, nullptr);
  const nlohmann::json cases = LoadFixtureJson("chat_templates.json");
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    const std::string tmpl = c["template"].get<std::string>();
    auto format = ParseChatFormat(c["format"].get<std::string>());
    ASSERT_TRUE(format.ok()) << format.status();
    EXPECT_EQ(DetectChatFormat(tmpl, *tok), *format) << tmpl;
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) {
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    const std::string rendered = RenderChat(*format, messages, c["add_generation_prompt"].get<bool>(),
                                            DefaultSystemPrompt(tmpl));
    EXPECT_EQ(rendered, c["expected"].get<std::string>())
        << "format " << c["format"] << ", template: " << tmpl;
  }
}

TEST(ChatTemplateTest, DefaultSystemPromptIsReadFromChatMlTemplates) {
  const nlohmann::json cases = LoadFixtureJson("chat_templates.json");
  std::vector<std::string> found;
  for (const auto& c : cases) {
    const std::string s = DefaultSystemPrompt(c["template"].get<std::string>());
    if (!s.empty() && (found.empty() || found.back() != s)) found.push_back(s);
  }
  EXPECT_EQ(found, (std::vector<std::string>{
                       "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                       "You are a helpful assistant."}));
  // Escaped newlines (as in Qwen2.5's template) and non-literal systems.
  EXPECT_EQ(DefaultSystemPrompt("{{ '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}"),
            "You are Qwen.");
  EXPECT_EQ(DefaultSystemPrompt("{{ '<|im_start|>system\\n' + message['content'] + '<|im_end|>' }}"),
            "");
}

TEST(ChatTemplateTest, DetectsFromVocabularyWithoutTemplate) {
  auto llama3 = LoadOrDie("llama3/tokenizer.json");
  auto qwen2 = LoadOrDie("qwen2/tokenizer.json");
  auto spm = LoadSentencePiece(FixturePath("sentencepiece/tokenizer.model"));
  ASSERT_TRUE(llama3 && qwen2 && spm.ok());
  EXPECT_EQ(DetectChatFormat("", *llama3), ChatFormat::kLlama3);
  EXPECT_EQ(DetectChatFormat("", *qwen2), ChatFormat::kChatML);
  EXPECT_EQ(DetectChatFormat("", **spm), ChatFormat::kPlain);
  EXPECT_EQ(DetectChatFormat("{{ messages }}", **spm), ChatFormat::kPlain);
  // The template wins over the vocabulary.
  EXPECT_EQ(DetectChatFormat("[INST] <<SYS>>", *qwen2), ChatFormat::kLlama2);
}

TEST(ChatTemplateTest, StopTokensAreInTheVocabularies) {
  auto llama3 = LoadOrDie("llama3/tokenizer.json");
  auto qwen2 = LoadOrDie("qwen2/tokenizer.json");
  ASSERT_TRUE(llama3 && qwen2);
  for (const std::string& t : ChatStopTokens(ChatFormat::kLlama3)) {
    EXPECT_TRUE(llama3->TokenId(t).has_value()) << t;
  }
  for (const std::string& t : ChatStopTokens(ChatFormat::kChatML)) {
    EXPECT_TRUE(qwen2->TokenId(t).has_value()) << t;
  }
  EXPECT_EQ(ChatStopTokens(ChatFormat::kLlama2), std::vector<std::string>{"</s>"});
  EXPECT_TRUE(ChatStopTokens(ChatFormat::kPlain).empty());
}

TEST(ChatTemplateTest, FormatNamesRoundTrip) {
  for (ChatFormat f : {ChatFormat::kChatML, ChatFormat::kLlama3, ChatFormat::kLlama2,
                       ChatFormat::kMistral, ChatFormat::kPlain}) {
    auto parsed = ParseChatFormat(ChatFormatName(f));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_EQ(ParseChatFormat("ChatML").value(), ChatFormat::kChatML);
  auto bad = ParseChatFormat("vicuna");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("chatml"), std::string::npos);
}

TEST(ChatTemplateTest, PlainJoinsContents) {
  const std::vector<ChatMessage> m = {{"user", "a"}, {"assistant", "b"}};
  EXPECT_EQ(RenderChat(ChatFormat::kPlain, m, true), "a\n\nb");
}

}  // namespace
}  // namespace linearize::tokenizer
