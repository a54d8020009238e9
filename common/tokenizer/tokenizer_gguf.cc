// GGUF metadata (tokenizer.ggml.*) -> Tokenizer. "gpt2" builds the same
// byte-level BPE as tokenizer.json, with the pre-tokenizer that
// tokenizer.ggml.pre names (a table mirroring llama.cpp's); "llama" builds
// the score-driven SentencePiece-style BPE.
#include <utility>

#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/io/gguf.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/spm_tokenizer.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::tokenizer {
namespace {

enum class PreKind { kGpt2, kDigitsGpt2, kLlama3, kQwen2 };

struct PreEntry {
  std::string_view name;
  PreKind kind;
};

// tokenizer.ggml.pre values and the Hugging Face pre-tokenizers they stand
// for (see llama.cpp's llama-vocab.cpp).
constexpr PreEntry kPreTable[] = {
    {"default", PreKind::kGpt2},      {"gpt-2", PreKind::kGpt2},
    {"smollm", PreKind::kDigitsGpt2}, {"starcoder", PreKind::kDigitsGpt2},
    {"llama3", PreKind::kLlama3},     {"llama-v3", PreKind::kLlama3},
    {"llama-bpe", PreKind::kLlama3},  {"qwen2", PreKind::kQwen2},
    {"deepseek-r1-qwen", PreKind::kQwen2},
};

std::string KnownPreNames() {
  std::string names;
  for (const PreEntry& e : kPreTable) {
    if (!names.empty()) names.append(", ");
    names.append(e.name);
  }
  return names;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePre(PreKind kind) {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  switch (kind) {
    case PreKind::kGpt2:
      return MakeByteLevel(false, true);
    case PreKind::kDigitsGpt2: {
      auto digits = MakeDigits(true);
      if (!digits.ok()) return digits.status();
      auto byte_level = MakeByteLevel(false, true);
      if (!byte_level.ok()) return byte_level.status();
      steps.push_back(std::move(*digits));
      steps.push_back(std::move(*byte_level));
      break;
    }
    case PreKind::kLlama3:
    case PreKind::kQwen2: {
      auto split = MakeSplit(kind == PreKind::kLlama3 ? kLlama3Pattern : kQwen2Pattern, true,
                             SplitBehavior::kIsolated, false);
      if (!split.ok()) return split.status();
      auto byte_level = MakeByteLevel(false, false);
      if (!byte_level.ok()) return byte_level.status();
      steps.push_back(std::move(*split));
      steps.push_back(std::move(*byte_level));
      break;
    }
  }
  return MakeSequence(std::move(steps));
}

// Optional integer id key.
absl::StatusOr<std::optional<int32_t>> OptId(const io::GgufFile& gguf, std::string_view key) {
  auto v = gguf.GetInt(key);
  if (absl::IsNotFound(v.status())) return std::optional<int32_t>();
  if (!v.ok()) return v.status();
  if (*v < 0 || *v > INT32_MAX) {
    return absl::InvalidArgumentError(internal::StrCat(gguf.name(), ": ", key, " = ", *v, " is out of range"));
  }
  return std::optional<int32_t>(static_cast<int32_t>(*v));
}

absl::StatusOr<bool> OptBool(const io::GgufFile& gguf, std::string_view key, bool fallback) {
  auto v = gguf.GetBool(key);
  if (absl::IsNotFound(v.status())) return fallback;
  return v;
}

absl::StatusOr<std::vector<int64_t>> TokenTypes(const io::GgufFile& gguf, size_t n) {
  auto types = gguf.GetIntArray("tokenizer.ggml.token_type");
  if (absl::IsNotFound(types.status())) return std::vector<int64_t>(n, 1);
  if (!types.ok()) return types.status();
  if (types->size() != n) {
    return absl::InvalidArgumentError(internal::StrCat(gguf.name(), ": tokenizer.ggml.token_type has ",
                                                   types->size(), " entries for ", n, " tokens"));
  }
  return types;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> FromGpt2(const io::GgufFile& gguf,
                                                    std::vector<std::string> tokens) {
  const std::string& file = gguf.name();
  auto pre_name = gguf.GetString("tokenizer.ggml.pre");
  std::string pre = "default";  // llama.cpp's choice when the key is absent
  if (pre_name.ok()) {
    pre = *pre_name;
  } else if (!absl::IsNotFound(pre_name.status())) {
    return pre_name.status();
  }
  const PreEntry* entry = nullptr;
  for (const PreEntry& e : kPreTable) {
    if (e.name == pre) entry = &e;
  }
  if (entry == nullptr) {
    return absl::UnimplementedError(internal::StrCat(file, ": tokenizer.ggml.pre \"", pre,
                                                 "\" is not supported (known: ", KnownPreNames(), ")"));
  }
  auto types = TokenTypes(gguf, tokens.size());
  if (!types.ok()) return types.status();
  auto merge_strings = gguf.GetStringArray("tokenizer.ggml.merges");
  if (!merge_strings.ok()) return merge_strings.status();
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merge_strings->size());
  for (size_t i = 0; i < merge_strings->size(); ++i) {
    const std::string& m = (*merge_strings)[i];
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(internal::StrCat(
          file, ": tokenizer.ggml.merges[", i, "] = \"", m, "\" is not \"left right\""));
    }
    merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }

  BpeTokenizerParts parts;
  parts.source = file;
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t type = (*types)[i];
    // Control (3) and user-defined (4) tokens are found in the text whole;
    // control ones are special.
    if (type == 3 || type == 4) {
      AddedToken t;
      t.content = tokens[i];
      t.id = static_cast<int32_t>(i);
      t.special = type == 3;
      parts.added_tokens.push_back(std::move(t));
    }
    vocab.emplace_back(std::move(tokens[i]), static_cast<int32_t>(i));
  }
  BpeOptions options;
  options.ignore_merges = entry->kind == PreKind::kLlama3;
  auto model = BpeModel::Create(std::move(vocab), merges, options, file);
  if (!model.ok()) return model.status();
  parts.model = std::move(*model);
  auto pre_tokenizer = MakePre(entry->kind);
  if (!pre_tokenizer.ok()) return pre_tokenizer.status();
  parts.pre_tokenizer = std::move(*pre_tokenizer);
  // Hugging Face's Qwen2 tokenizer normalizes to NFC (llama.cpp does not).
  if (entry->kind == PreKind::kQwen2) parts.normalizer = MakeNfcNormalizer();

  auto bos = OptId(gguf, "tokenizer.ggml.bos_token_id");
  auto eos = OptId(gguf, "tokenizer.ggml.eos_token_id");
  auto add_bos = OptBool(gguf, "tokenizer.ggml.add_bos_token", entry->kind == PreKind::kLlama3);
  auto add_eos = OptBool(gguf, "tokenizer.ggml.add_eos_token", false);
  for (const absl::Status& s : {bos.status(), eos.status(), add_bos.status(), add_eos.status()}) {
    if (!s.ok()) return s;
  }
  parts.bos_id = *bos;
  parts.eos_id = *eos;
  if (*add_bos && *bos) parts.prefix_ids.push_back(**bos);
  if (*add_eos && *eos) parts.suffix_ids.push_back(**eos);
  return MakeBpeTokenizer(std::move(parts));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> FromLlama(const io::GgufFile& gguf,
                                                     std::vector<std::string> tokens) {
  SpmVocab v;
  const size_t n = tokens.size();
  v.pieces = std::move(tokens);
  auto scores = gguf.GetFloatArray("tokenizer.ggml.scores");
  if (!scores.ok()) return scores.status();
  if (scores->size() != n) {
    return absl::InvalidArgumentError(internal::StrCat(gguf.name(), ": tokenizer.ggml.scores has ",
                                                   scores->size(), " entries for ", n, " tokens"));
  }
  v.scores.assign(scores->begin(), scores->end());
  auto types = TokenTypes(gguf, n);
  if (!types.ok()) return types.status();
  for (size_t i = 0; i < n; ++i) {
    const int64_t t = (*types)[i];
    if (t < 1 || t > 6) {
      return absl::InvalidArgumentError(internal::StrCat(
          gguf.name(), ": tokenizer.ggml.token_type[", i, "] = ", t, " is not a known type (1-6)"));
    }
    v.types.push_back(static_cast<PieceType>(t));
  }
  auto bos = OptId(gguf, "tokenizer.ggml.bos_token_id");
  auto eos = OptId(gguf, "tokenizer.ggml.eos_token_id");
  auto unk = OptId(gguf, "tokenizer.ggml.unknown_token_id");
  auto add_bos = OptBool(gguf, "tokenizer.ggml.add_bos_token", true);
  auto add_eos = OptBool(gguf, "tokenizer.ggml.add_eos_token", false);
  auto prefix = OptBool(gguf, "tokenizer.ggml.add_space_prefix", true);
  for (const absl::Status& s : {bos.status(), eos.status(), unk.status(), add_bos.status(),
                                add_eos.status(), prefix.status()}) {
    if (!s.ok()) return s;
  }
  v.bos_id = *bos;
  v.eos_id = *eos;
  v.unk_id = *unk;
  v.add_bos = *add_bos;
  v.add_eos = *add_eos;
  v.add_space_prefix = *prefix;
  return MakeSpmTokenizer(std::move(v), gguf.name());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromGguf(const io::GgufFile& gguf) {
  auto model = gguf.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  auto tokens = gguf.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  if (tokens->size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(internal::StrCat(gguf.name(), ": too many tokens"));
  }
  if (*model == "gpt2") return FromGpt2(gguf, std::move(*tokens));
  if (*model == "llama") return FromLlama(gguf, std::move(*tokens));
  return absl::UnimplementedError(internal::StrCat(gguf.name(), ": tokenizer.ggml.model \"", *model,
                                               "\" is not supported (supported: gpt2, llama)"));
}

}  // namespace linearize::tokenizer
