// Chat prompt formats. We recognise the formats the supported models use
// (ChatML, Llama 3, Llama 2 / Mistral [INST]) from the template string or the
// vocabulary, and render them in C++ rather than evaluating Jinja. Each
// renders what transformers' apply_chat_template gives with the model's
// template: ChatML = SmolLM2 / Qwen2, kLlama3 = Meta-Llama-3-Instruct (3.0;
// 3.1+ templates add a dated system header), kLlama2 = Llama-2-chat,
// kMistral = Mistral-7B-Instruct-v0.1 (a system message goes before the
// first user message). Role-alternation errors the templates raise are not
// checked; messages of other roles are skipped where the template would.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace linearize::tokenizer {

class Tokenizer;

// kPlain: contents joined by blank lines, no generation prompt.
enum class ChatFormat { kChatML, kLlama3, kLlama2, kMistral, kPlain };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

std::string_view ChatFormatName(ChatFormat format);
absl::StatusOr<ChatFormat> ParseChatFormat(std::string_view name);
// Picks the format from a Jinja chat template (tokenizer_config.json's or
// GGUF's tokenizer.chat_template) and, when there is none, from the special
// tokens the vocabulary has. "[INST]" templates are kLlama2 when they have
// "<<SYS>>", else kMistral. kPlain when nothing matches.
ChatFormat DetectChatFormat(std::string_view jinja_template, const Tokenizer& tokenizer);
// The system prompt a ChatML template inserts when the conversation has
// none (SmolLM2's "You are a helpful AI assistant named SmolLM, ..."), or ""
// when the template has no such literal.
std::string DefaultSystemPrompt(std::string_view jinja_template);
// Renders `messages`; with `add_generation_prompt` ends with the assistant
// header so the model answers next (the [INST] formats need none). A
// non-empty `default_system` is put first as a system message when the
// conversation has messages and the first is not a system message, as
// SmolLM2's and Qwen2's templates do with theirs.
std::string RenderChat(ChatFormat format, std::span<const ChatMessage> messages,
                       bool add_generation_prompt, std::string_view default_system = "");
// Token strings that end an assistant turn in this format ("<|im_end|>", ...).
std::vector<std::string> ChatStopTokens(ChatFormat format);

}  // namespace linearize::tokenizer
