#include "common/convert/hf_tokenizer.h"

#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer/pre_tokenizer.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

using nlohmann::json;

// tokenizer.ggml.pre -> the Hugging Face pre-tokenizer it stands for; the
// same table as common/tokenizer/tokenizer_gguf.cc (llama.cpp's llama-vocab.cpp).
enum class PreKind { kGpt2, kDigitsGpt2, kLlama3, kQwen2 };
constexpr std::pair<std::string_view, PreKind> kPreTable[] = {
    {"default", PreKind::kGpt2},           {"gpt-2", PreKind::kGpt2},
    {"smollm", PreKind::kDigitsGpt2},      {"starcoder", PreKind::kDigitsGpt2},
    {"llama3", PreKind::kLlama3},          {"llama-v3", PreKind::kLlama3},
    {"llama-bpe", PreKind::kLlama3},       {"qwen2", PreKind::kQwen2},
    {"deepseek-r1-qwen", PreKind::kQwen2},
};

json ByteLevel(bool use_regex, bool trim_offsets = true) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

json PreTokenizer(PreKind kind) {
  switch (kind) {
    case PreKind::kGpt2:
      return ByteLevel(true);
    case PreKind::kDigitsGpt2:
      return {{"type", "Sequence"},
              {"pretokenizers",
               json::array({{{"type", "Digits"}, {"individual_digits", true}}, ByteLevel(true)})}};
    case PreKind::kLlama3:
    case PreKind::kQwen2: {
      const std::string_view pattern =
          kind == PreKind::kLlama3 ? tokenizer::kLlama3Pattern : tokenizer::kQwen2Pattern;
      json split = {{"type", "Split"},
                    {"pattern", {{"Regex", std::string(pattern)}}},
                    {"behavior", "Isolated"},
                    {"invert", false}};
      return {{"type", "Sequence"}, {"pretokenizers", json::array({split, ByteLevel(false)})}};
    }
  }
  return nullptr;
}

absl::StatusOr<std::optional<int64_t>> OptInt(const io::GgufFile& gguf, std::string_view key) {
  absl::StatusOr<int64_t> v = gguf.GetInt(key);
  if (absl::IsNotFound(v.status())) return std::optional<int64_t>();
  if (!v.ok()) return v.status();
  return std::optional<int64_t>(*v);
}

absl::StatusOr<bool> OptBool(const io::GgufFile& gguf, std::string_view key, bool fallback) {
  absl::StatusOr<bool> v = gguf.GetBool(key);
  if (absl::IsNotFound(v.status())) return fallback;
  return v;
}

absl::Status Bad(const io::GgufFile& gguf, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": ", std::string(what)));
}

// Protocol-buffer wire format, enough for sentencepiece_model.proto.
class ProtoWriter {
 public:
  void Int(int field, int64_t v) {  // int32/int64/enum/bool (negative: 10 bytes, as protobuf)
    Tag(field, 0);
    Varint(static_cast<uint64_t>(v));
  }
  void Float(int field, float v) {
    Tag(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>(bits >> (8 * i)));
  }
  void Bytes(int field, std::string_view v) {
    Tag(field, 2);
    Varint(v.size());
    out_.append(v);
  }
  const std::string& str() const { return out_; }

 private:
  void Tag(int field, int wire) {
    Varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire));
  }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// A SentencePiece ModelProto (BPE) from the GGUF "llama" tokenizer metadata.
absl::StatusOr<std::string> SentencePieceModel(
    const io::GgufFile& gguf, const std::vector<std::string>& tokens,
    const std::vector<int64_t>& types, std::optional<int64_t> bos, std::optional<int64_t> eos,
    std::optional<int64_t> unk, std::optional<int64_t> pad, bool add_bos) {
  absl::StatusOr<std::vector<double>> scores = gguf.GetFloatArray("tokenizer.ggml.scores");
  if (!scores.ok()) return scores.status();
  if (scores->size() != tokens.size()) {
    return Bad(gguf, absl::StrCat("tokenizer.ggml.scores has ", scores->size(), " entries for ",
                                  tokens.size(), " tokens"));
  }
  absl::StatusOr<bool> prefix = OptBool(gguf, "tokenizer.ggml.add_space_prefix", true);
  if (!prefix.ok()) return prefix.status();
  ProtoWriter model;
  bool bytes = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    // GGUF token types are SentencePiece's: 1 normal, 2 unknown, 3 control,
    // 4 user-defined, 5 unused, 6 byte.
    if (types[i] < 1 || types[i] > 6) {
      return Bad(gguf, absl::StrCat("tokenizer.ggml.token_type[", i, "] = ", types[i],
                                    " is not a known type (1-6)"));
    }
    bytes |= types[i] == 6;
    ProtoWriter piece;
    piece.Bytes(1, tokens[i]);
    piece.Float(2, static_cast<float>((*scores)[i]));
    piece.Int(3, types[i]);
    model.Bytes(1, piece.str());
  }
  ProtoWriter trainer;
  trainer.Int(3, 2);  // model_type: BPE
  trainer.Int(4, static_cast<int64_t>(tokens.size()));
  trainer.Int(35, bytes ? 1 : 0);  // byte_fallback
  trainer.Int(40, unk.value_or(0));
  // Our SentencePiece tokenizer adds the BOS piece when asked to add special
  // tokens; without add_bos_token there is none to add.
  trainer.Int(41, add_bos && bos ? *bos : -1);
  trainer.Int(42, eos.value_or(-1));
  trainer.Int(43, pad.value_or(-1));
  model.Bytes(2, trainer.str());
  ProtoWriter normalizer;
  normalizer.Bytes(1, "identity");
  normalizer.Int(3, *prefix ? 1 : 0);  // add_dummy_prefix
  normalizer.Int(4, 0);                // remove_extra_whitespaces
  normalizer.Int(5, 1);                // escape_whitespaces
  model.Bytes(3, normalizer.str());
  return model.str();
}

// tokenizer.json of a byte-level BPE ("gpt2") tokenizer.
absl::StatusOr<json> TokenizerJson(const io::GgufFile& gguf, PreKind kind,
                                   const std::vector<std::string>& tokens, json vocab, json added,
                                   std::optional<int64_t> bos, std::optional<int64_t> eos,
                                   bool add_bos, bool add_eos) {
  absl::StatusOr<std::vector<std::string>> merge_strings =
      gguf.GetStringArray("tokenizer.ggml.merges");
  if (!merge_strings.ok()) return merge_strings.status();
  json merges = json::array();
  for (size_t i = 0; i < merge_strings->size(); ++i) {
    const std::string& m = (*merge_strings)[i];
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos) {
      return Bad(
          gguf, absl::StrCat("tokenizer.ggml.merges[", i, "] = \"", m, "\" is not \"left right\""));
    }
    merges.push_back(json::array({m.substr(0, space), m.substr(space + 1)}));
  }

  // BOS/EOS as the GGUF tokenizer adds them (TokenizerFromGguf's prefix/suffix).
  json post = {{"type", "ByteLevel"},
               {"add_prefix_space", true},
               {"trim_offsets", false},
               {"use_regex", true}};
  const bool prefix = add_bos && bos.has_value();
  const bool suffix = add_eos && eos.has_value();
  if (prefix || suffix) {
    json single = json::array(), specials = json::object();
    auto special = [&](int64_t id, int type_id) {
      const std::string& t = tokens[static_cast<size_t>(id)];
      specials[t] = {{"id", t}, {"ids", json::array({id})}, {"tokens", json::array({t})}};
      return json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}};
    };
    auto sequence = [](const char* id, int type_id) {
      return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
    };
    if (prefix) single.push_back(special(*bos, 0));
    single.push_back(sequence("A", 0));
    if (suffix) single.push_back(special(*eos, 0));
    json pair = single;
    if (prefix) pair.push_back(special(*bos, 1));
    pair.push_back(sequence("B", 1));
    if (suffix) pair.push_back(special(*eos, 1));
    post = {{"type", "Sequence"},
            {"processors", json::array({ByteLevel(true, false),
                                        {{"type", "TemplateProcessing"},
                                         {"single", single},
                                         {"pair", pair},
                                         {"special_tokens", specials}}})}};
  }

  json doc = json::object();
  doc["version"] = "1.0";
  doc["truncation"] = nullptr;
  doc["padding"] = nullptr;
  doc["added_tokens"] = std::move(added);
  doc["normalizer"] = kind == PreKind::kQwen2 ? json{{"type", "NFC"}} : json(nullptr);
  doc["pre_tokenizer"] = PreTokenizer(kind);
  doc["post_processor"] = std::move(post);
  doc["decoder"] = {{"type", "ByteLevel"},
                    {"add_prefix_space", true},
                    {"trim_offsets", true},
                    {"use_regex", true}};
  doc["model"] = {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"ignore_merges", kind == PreKind::kLlama3},
                  {"vocab", std::move(vocab)},
                  {"merges", std::move(merges)}};
  return doc;
}

}  // namespace

absl::StatusOr<HfTokenizerFiles> HfTokenizerFromGguf(const io::GgufFile& gguf,
                                                     int64_t model_max_length) {
  absl::StatusOr<std::string> model = gguf.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  if (*model != "gpt2" && *model != "llama") {
    return absl::UnimplementedError(absl::StrCat(
        gguf.name(), ": tokenizer.ggml.model \"", *model,
        "\" cannot be written as Hugging Face tokenizer files (supported: gpt2, llama)"));
  }
  const bool spm = *model == "llama";
  PreKind kind = PreKind::kGpt2;
  if (!spm) {
    std::string pre = "default";  // llama.cpp's choice when the key is absent
    if (absl::StatusOr<std::string> p = gguf.GetString("tokenizer.ggml.pre"); p.ok()) {
      pre = *p;
    } else if (!absl::IsNotFound(p.status())) {
      return p.status();
    }
    std::optional<PreKind> found;
    std::string known;
    for (const auto& [name, k] : kPreTable) {
      if (name == pre) found = k;
      absl::StrAppend(&known, known.empty() ? "" : ", ", std::string(name));
    }
    if (!found) {
      return absl::UnimplementedError(absl::StrCat(gguf.name(), ": tokenizer.ggml.pre \"", pre,
                                                   "\" is not supported (known: ", known, ")"));
    }
    kind = *found;
  }

  absl::StatusOr<std::vector<std::string>> tokens = gguf.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  std::vector<int64_t> types(tokens->size(), 1);
  if (absl::StatusOr<std::vector<int64_t>> t = gguf.GetIntArray("tokenizer.ggml.token_type");
      t.ok()) {
    if (t->size() != tokens->size()) {
      return Bad(gguf, absl::StrCat("tokenizer.ggml.token_type has ", t->size(), " entries for ",
                                    tokens->size(), " tokens"));
    }
    types = *std::move(t);
  } else if (!absl::IsNotFound(t.status())) {
    return t.status();
  }

  json vocab = json::object();
  json added = json::array();
  json added_decoder = json::object();
  std::unordered_map<std::string_view, size_t> seen;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string& token = (*tokens)[i];
    if (auto [it, fresh] = seen.emplace(token, i); !fresh) {
      return Bad(gguf,
                 absl::StrCat("tokenizer.ggml.tokens lists \"", token, "\" twice (ids ", it->second,
                              " and ", i, "); a tokenizer vocabulary cannot hold both"));
    }
    if (!spm) vocab[token] = i;
    // Control (3) and user-defined (4) tokens are matched whole in the text,
    // before the pre-tokenizer; control ones are special.
    if (types[i] == 3 || types[i] == 4 || (spm && types[i] == 2)) {
      json t = {{"content", token}, {"lstrip", false},      {"normalized", false},
                {"rstrip", false},  {"single_word", false}, {"special", types[i] != 4}};
      added_decoder[std::to_string(i)] = t;
      t["id"] = i;
      added.push_back(std::move(t));
    }
  }

  auto id_key = [&](std::string_view key) -> absl::StatusOr<std::optional<int64_t>> {
    absl::StatusOr<std::optional<int64_t>> id = OptInt(gguf, key);
    if (!id.ok()) return id.status();
    if (*id && (**id < 0 || **id >= static_cast<int64_t>(tokens->size()))) {
      return Bad(gguf, absl::StrCat(std::string(key), " = ", **id, " is not a token id (",
                                    tokens->size(), " tokens)"));
    }
    return id;
  };
  absl::StatusOr<std::optional<int64_t>> bos = id_key("tokenizer.ggml.bos_token_id");
  absl::StatusOr<std::optional<int64_t>> eos = id_key("tokenizer.ggml.eos_token_id");
  absl::StatusOr<std::optional<int64_t>> unk = id_key("tokenizer.ggml.unknown_token_id");
  absl::StatusOr<std::optional<int64_t>> pad = id_key("tokenizer.ggml.padding_token_id");
  // TokenizerFromGguf's defaults: BOS for SentencePiece and Llama 3 models.
  absl::StatusOr<bool> add_bos =
      OptBool(gguf, "tokenizer.ggml.add_bos_token", spm || kind == PreKind::kLlama3);
  absl::StatusOr<bool> add_eos = OptBool(gguf, "tokenizer.ggml.add_eos_token", false);
  for (const absl::Status& s : {bos.status(), eos.status(), unk.status(), pad.status(),
                                add_bos.status(), add_eos.status()}) {
    if (!s.ok()) return s;
  }
  auto token_of = [&](const std::optional<int64_t>& id) -> json {
    if (!id) return nullptr;
    return (*tokens)[static_cast<size_t>(*id)];
  };

  HfTokenizerFiles out;
  json config = json::object();
  if (spm) {
    if (*add_eos) {
      return absl::UnimplementedError(absl::StrCat(
          gguf.name(), ": tokenizer.ggml.add_eos_token is set; a tokenizer.model cannot say so"));
    }
    absl::StatusOr<std::string> proto =
        SentencePieceModel(gguf, *tokens, types, *bos, *eos, *unk, *pad, *add_bos);
    if (!proto.ok()) return proto.status();
    out.tokenizer_model = *std::move(proto);
    config["tokenizer_class"] = "LlamaTokenizer";
    config["legacy"] = true;  // control pieces in the text are matched as such
  } else {
    absl::StatusOr<json> doc = TokenizerJson(gguf, kind, *tokens, std::move(vocab),
                                             std::move(added), *bos, *eos, *add_bos, *add_eos);
    if (!doc.ok()) return doc.status();
    try {
      out.tokenizer_json = doc->dump(2) + "\n";
    } catch (const json::exception& e) {  // a token is not UTF-8
      return Bad(gguf, absl::StrCat("tokenizer metadata is not valid UTF-8: ", e.what()));
    }
    config["tokenizer_class"] = "PreTrainedTokenizerFast";
  }
  config["add_bos_token"] = *add_bos;
  config["add_eos_token"] = *add_eos;
  config["added_tokens_decoder"] = std::move(added_decoder);
  config["bos_token"] = token_of(*bos);
  config["eos_token"] = token_of(*eos);
  config["unk_token"] = token_of(*unk);
  config["pad_token"] = token_of(*pad);
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = model_max_length;
  if (gguf.Find("tokenizer.chat_template") != nullptr) {
    absl::StatusOr<std::string> chat_template = gguf.GetString("tokenizer.chat_template");
    if (!chat_template.ok()) return chat_template.status();
    config["chat_template"] = *std::move(chat_template);
  }
  json special_map = json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (!config[key].is_null()) special_map[key] = config[key];
  }
  try {
    out.tokenizer_config_json = config.dump(2) + "\n";
    out.special_tokens_map_json = special_map.dump(2) + "\n";
  } catch (const json::exception& e) {  // a token or the template is not UTF-8
    return Bad(gguf, absl::StrCat("tokenizer metadata is not valid UTF-8: ", e.what()));
  }
  return out;
}

}  // namespace linearize::convert
