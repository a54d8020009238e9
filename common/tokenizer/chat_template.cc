#include "common/tokenizer/chat_template.h"

#include <algorithm>

#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

// Python's str.isspace, which Jinja's trim filter and str.strip() use.
bool IsPythonSpace(char32_t cp) {
  return IsUnicodeWhitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

std::string_view PythonStrip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, begin, &cp);
    if (n == 0 || !IsPythonSpace(cp)) break;
    begin += n;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t p = end - 1;
    while (p > begin && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
    char32_t cp;
    if (DecodeUtf8(s, p, &cp) != end - p || !IsPythonSpace(cp)) break;
    end = p;
  }
  return s.substr(begin, end - begin);
}

// The messages with `default_system` put first when there is no system
// message and one is given.
std::vector<ChatMessage> WithSystem(std::span<const ChatMessage> messages,
                                    std::string_view default_system) {
  std::vector<ChatMessage> out;
  if (!default_system.empty() && !messages.empty() && messages[0].role != "system") {
    out.push_back(ChatMessage{"system", std::string(default_system)});
  }
  out.insert(out.end(), messages.begin(), messages.end());
  return out;
}

// SmolLM2 / Qwen2 ChatML.
std::string RenderChatMl(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    internal::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  }
  if (add_generation_prompt) out.append("<|im_start|>assistant\n");
  return out;
}

// Meta-Llama-3-*-Instruct's template (contents trimmed, BOS first).
std::string RenderLlama3(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  if (!messages.empty()) out.append("<|begin_of_text|>");
  for (const ChatMessage& m : messages) {
    internal::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n",
                    PythonStrip(m.content), "<|eot_id|>");
  }
  if (add_generation_prompt) out.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
  return out;
}

// Llama-2-*-chat's template: <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] answer </s>
std::string RenderLlama2(std::span<const ChatMessage> messages) {
  std::string out;
  std::string_view system;
  bool has_system = false;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    has_system = true;
    messages = messages.subspan(1);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::string content = m.content;
    if (i == 0 && has_system) {
      content = internal::StrCat("<<SYS>>\n", system, "\n<</SYS>>\n\n", m.content);
    }
    if (m.role == "user") {
      internal::StrAppend(&out, "<s>[INST] ", PythonStrip(content), " [/INST]");
    } else if (m.role == "assistant") {
      internal::StrAppend(&out, " ", PythonStrip(content), " </s>");
    }
  }
  return out;
}

// Mistral-7B-Instruct-v0.1's template: <s>[INST] user [/INST]answer</s>.
// It has no system role; a system message is put before the first user
// message, separated by a blank line.
std::string RenderMistral(std::span<const ChatMessage> messages) {
  std::string out = "<s>";
  std::string system;
  bool system_pending = false;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system = m.content;
      system_pending = true;
    } else if (m.role == "user") {
      internal::StrAppend(&out, "[INST] ", system_pending ? internal::StrCat(system, "\n\n") : "",
                      m.content, " [/INST]");
      system_pending = false;
    } else if (m.role == "assistant") {
      internal::StrAppend(&out, m.content, "</s>");
    }
  }
  return out;
}

std::string RenderPlain(std::span<const ChatMessage> messages) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i > 0) out.append("\n\n");
    out.append(messages[i].content);
  }
  return out;
}

// Undoes the escapes of a Jinja string literal (\n, \t, \\, \', \").
std::string UnescapeJinja(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out.push_back(c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

std::string_view ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatML: return "chatml";
    case ChatFormat::kLlama3: return "llama3";
    case ChatFormat::kLlama2: return "llama2";
    case ChatFormat::kMistral: return "mistral";
    case ChatFormat::kPlain: return "plain";
  }
  return "plain";
}

absl::StatusOr<ChatFormat> ParseChatFormat(std::string_view name) {
  for (ChatFormat f : {ChatFormat::kChatML, ChatFormat::kLlama3, ChatFormat::kLlama2,
                       ChatFormat::kMistral, ChatFormat::kPlain}) {
    const std::string_view known = ChatFormatName(f);
    if (name.size() == known.size() &&
        std::equal(name.begin(), name.end(), known.begin(),
                   [](char a, char b) { return (a | 0x20) == b; })) {
      return f;
    }
  }
  return absl::InvalidArgumentError(internal::StrCat(
      "unknown chat format \"", name, "\" (known: chatml, llama3, llama2, mistral, plain)"));
}

ChatFormat DetectChatFormat(std::string_view jinja_template, const Tokenizer& tokenizer) {
  auto has = [jinja_template](std::string_view s) {
    return jinja_template.find(s) != std::string_view::npos;
  };
  if (has("<|im_start|>")) return ChatFormat::kChatML;
  if (has("<|start_header_id|>")) return ChatFormat::kLlama3;
  if (has("[INST]")) {
    return has("<<SYS>>") ? ChatFormat::kLlama2
                                                        : ChatFormat::kMistral;
  }
  if (tokenizer.TokenId("<|im_start|>")) return ChatFormat::kChatML;
  if (tokenizer.TokenId("<|start_header_id|>")) return ChatFormat::kLlama3;
  if (tokenizer.TokenId("[INST]")) return ChatFormat::kMistral;
  return ChatFormat::kPlain;
}

std::string DefaultSystemPrompt(std::string_view jinja_template) {
  constexpr std::string_view kHeader = "<|im_start|>system";
  const size_t at = jinja_template.find(kHeader);
  if (at == std::string_view::npos) return "";
  std::string_view rest = jinja_template.substr(at + kHeader.size());
  if (rest.starts_with("\n")) {
    rest.remove_prefix(1);
  } else if (rest.starts_with("\\n")) {
    rest.remove_prefix(2);
  } else {
    return "";
  }
  const size_t end = rest.find("<|im_end|>");
  if (end == std::string_view::npos) return "";
  const std::string_view text = rest.substr(0, end);
  // A literal only: quotes mean the text is built from variables.
  if (text.find_first_of("'\"{}") != std::string_view::npos) return "";
  return UnescapeJinja(text);
}

std::string RenderChat(ChatFormat format, std::span<const ChatMessage> messages,
                       bool add_generation_prompt, std::string_view default_system) {
  const std::vector<ChatMessage> all = WithSystem(messages, default_system);
  switch (format) {
    case ChatFormat::kChatML: return RenderChatMl(all, add_generation_prompt);
    case ChatFormat::kLlama3: return RenderLlama3(all, add_generation_prompt);
    case ChatFormat::kLlama2: return RenderLlama2(all);
    case ChatFormat::kMistral: return RenderMistral(all);
    case ChatFormat::kPlain: return RenderPlain(all);
  }
  return RenderPlain(all);
}

std::vector<std::string> ChatStopTokens(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatML: return {"<|im_end|>", "<|endoftext|>"};
    case ChatFormat::kLlama3: return {"<|eot_id|>", "<|end_of_text|>"};
    case ChatFormat::kLlama2:
    case ChatFormat::kMistral: return {"</s>"};
    case ChatFormat::kPlain: return {};
  }
  return {};
}

}  // namespace linearize::tokenizer
