// tokenizer.json (Hugging Face `tokenizers`) -> BpeTokenizer.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/tokenizer_json.h"
#include "nlohmann/json.hpp"

namespace linearize::tokenizer {
namespace {

using Json = nlohmann::json;

// Field access that reports "<file>: <path> <problem>".
class Reader {
 public:
  explicit Reader(std::string_view file) : file_(file) {}

  absl::Status Error(std::string_view path, std::string_view problem) const {
    return absl::InvalidArgumentError(internal::StrCat(file_, ": ", path, " ", problem));
  }
  absl::Status Unsupported(std::string_view path, std::string_view problem) const {
    return absl::UnimplementedError(internal::StrCat(file_, ": ", path, " ", problem));
  }

  // Missing or null -> `fallback`.
  absl::StatusOr<bool> Bool(const Json& obj, const char* key, std::string_view path,
                            bool fallback) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return Error(internal::StrCat(path, ".", key), "must be a boolean");
    return it->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> OptString(const Json& obj, const char* key,
                                                       std::string_view path) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string()) return Error(internal::StrCat(path, ".", key), "must be a string");
    return std::optional<std::string>(it->get<std::string>());
  }
  absl::StatusOr<std::string> String(const Json& obj, const char* key,
                                     std::string_view path) const {
    auto s = OptString(obj, key, path);
    if (!s.ok()) return s.status();
    if (!s->has_value()) return Error(internal::StrCat(path, ".", key), "is missing");
    return **s;
  }
  absl::StatusOr<int32_t> Id(const Json& value, std::string_view path) const {
    if (!value.is_number_integer()) return Error(path, "must be an integer id");
    if (value.is_number_unsigned() ? value.get<uint64_t>() > INT32_MAX
                                   : (value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX)) {
      return Error(path, "is out of range [0, 2^31)");
    }
    return static_cast<int32_t>(value.get<int64_t>());
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Reader& r, const Json& j,
                                                            std::string_view path, int depth) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  if (!j.is_object() || depth > 16) return r.Error(path, "must be an object (or null)");
  auto type = r.String(j, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "NFC") return MakeNfcNormalizer();
  if (*type == "Sequence") {
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return r.Error(path, "Sequence needs a normalizers array");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < it->size(); ++i) {
      auto step = ParseNormalizer(r, (*it)[i], internal::StrCat(path, ".normalizers[", i, "]"), depth + 1);
      if (!step.ok()) return step.status();
      if (*step != nullptr) steps.push_back(std::move(*step));
    }
    return MakeSequenceNormalizer(std::move(steps));
  }
  return r.Unsupported(internal::StrCat(path, ".type"),
                       internal::StrCat("\"", *type, "\" is not supported (supported: NFC, Sequence)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Reader& r, const Json& j,
                                                                std::string_view path,
                                                                int depth) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  if (!j.is_object() || depth > 16) return r.Error(path, "must be an object (or null)");
  auto type = r.String(j, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") {
    auto prefix = r.Bool(j, "add_prefix_space", path, true);
    if (!prefix.ok()) return prefix.status();
    auto use_regex = r.Bool(j, "use_regex", path, true);
    if (!use_regex.ok()) return use_regex.status();
    return MakeByteLevel(*prefix, *use_regex);
  }
  if (*type == "Digits") {
    auto individual = r.Bool(j, "individual_digits", path, false);
    if (!individual.ok()) return individual.status();
    return MakeDigits(*individual);
  }
  if (*type == "Split") {
    auto it = j.find("pattern");
    const std::string pattern_path = internal::StrCat(path, ".pattern");
    if (it == j.end() || !it->is_object()) {
      return r.Error(pattern_path, "must be an object {\"Regex\": ...} or {\"String\": ...}");
    }
    auto regex = r.OptString(*it, "Regex", pattern_path);
    if (!regex.ok()) return regex.status();
    auto literal = r.OptString(*it, "String", pattern_path);
    if (!literal.ok()) return literal.status();
    if (regex->has_value() == literal->has_value()) {
      return r.Error(pattern_path, "must have exactly one of Regex and String");
    }
    auto behavior_name = r.String(j, "behavior", path);
    if (!behavior_name.ok()) return behavior_name.status();
    auto behavior = ParseSplitBehavior(*behavior_name);
    if (!behavior.ok()) return r.Error(internal::StrCat(path, ".behavior"), std::string(behavior.status().message()));
    auto invert = r.Bool(j, "invert", path, false);
    if (!invert.ok()) return invert.status();
    auto split = MakeSplit(regex->has_value() ? **regex : **literal, regex->has_value(), *behavior,
                           *invert);
    if (!split.ok()) return r.Error(pattern_path, std::string(split.status().message()));
    return split;
  }
  if (*type == "Sequence") {
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) return r.Error(path, "Sequence needs a pretokenizers array");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < it->size(); ++i) {
      auto step =
          ParsePreTokenizer(r, (*it)[i], internal::StrCat(path, ".pretokenizers[", i, "]"), depth + 1);
      if (!step.ok()) return step.status();
      if (*step != nullptr) steps.push_back(std::move(*step));
    }
    return MakeSequence(std::move(steps));
  }
  return r.Unsupported(
      internal::StrCat(path, ".type"),
      internal::StrCat("\"", *type, "\" is not supported (supported: ByteLevel, Split, Digits, Sequence)"));
}

absl::Status ParseDecoder(const Reader& r, const Json& j, std::string_view path, int depth) {
  if (!j.is_object() || depth > 16) return r.Error(path, "must be an object");
  auto type = r.String(j, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();
  if (*type == "Sequence") {
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array() || it->empty()) {
      return r.Error(path, "Sequence needs a non-empty decoders array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      if (absl::Status s = ParseDecoder(r, (*it)[i], internal::StrCat(path, ".decoders[", i, "]"), depth + 1);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  return r.Unsupported(internal::StrCat(path, ".type"),
                       internal::StrCat("\"", *type, "\" is not supported (only ByteLevel)"));
}

// The ids add_special_tokens puts before and after one sequence.
absl::Status ParsePostProcessor(const Reader& r, const Json& j, std::string_view path,
                                int depth, std::vector<int32_t>* prefix,
                                std::vector<int32_t>* suffix) {
  if (j.is_null()) return absl::OkStatus();
  if (!j.is_object() || depth > 16) return r.Error(path, "must be an object (or null)");
  auto type = r.String(j, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();  // offsets only
  if (*type == "Sequence") {
    auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) return r.Error(path, "Sequence needs a processors array");
    for (size_t i = 0; i < it->size(); ++i) {
      std::vector<int32_t> p, s;
      if (absl::Status st = ParsePostProcessor(
              r, (*it)[i], internal::StrCat(path, ".processors[", i, "]"), depth + 1, &p, &s);
          !st.ok()) {
        return st;
      }
      // Each processor wraps what the previous ones produced.
      prefix->insert(prefix->begin(), p.begin(), p.end());
      suffix->insert(suffix->end(), s.begin(), s.end());
    }
    return absl::OkStatus();
  }
  if (*type == "RobertaProcessing" || *type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      auto it = j.find(key);
      const std::string field = internal::StrCat(path, ".", key);
      if (it == j.end() || !it->is_array() || it->size() != 2) {
        return r.Error(field, "must be [token, id]");
      }
      auto id = r.Id((*it)[1], internal::StrCat(field, "[1]"));
      if (!id.ok()) return id.status();
      (std::string_view(key) == "cls" ? prefix : suffix)->push_back(*id);
    }
    return absl::OkStatus();
  }
  if (*type == "TemplateProcessing") {
    auto single = j.find("single");
    const std::string single_path = internal::StrCat(path, ".single");
    if (single == j.end() || !single->is_array()) return r.Error(single_path, "must be an array");
    auto specials = j.find("special_tokens");
    const std::string specials_path = internal::StrCat(path, ".special_tokens");
    if (specials == j.end() || !specials->is_object()) {
      return r.Error(specials_path, "must be an object");
    }
    bool seen_sequence = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const Json& item = (*single)[i];
      const std::string item_path = internal::StrCat(single_path, "[", i, "]");
      if (!item.is_object()) return r.Error(item_path, "must be an object");
      if (auto seq = item.find("Sequence"); seq != item.end()) {
        auto id = seq->is_object() ? r.OptString(*seq, "id", item_path)
                                   : absl::StatusOr<std::optional<std::string>>(std::nullopt);
        if (!id.ok()) return id.status();
        if (!id->has_value() || **id != "A" || seen_sequence) {
          return r.Unsupported(item_path, "must be the one sequence \"A\"");
        }
        seen_sequence = true;
        continue;
      }
      auto tok = item.find("SpecialToken");
      if (tok == item.end() || !tok->is_object()) {
        return r.Error(item_path, "must hold Sequence or SpecialToken");
      }
      auto name = r.String(*tok, "id", internal::StrCat(item_path, ".SpecialToken"));
      if (!name.ok()) return name.status();
      auto entry = specials->find(*name);
      const std::string entry_path = internal::StrCat(specials_path, "[\"", *name, "\"]");
      if (entry == specials->end() || !entry->is_object()) return r.Error(entry_path, "is missing");
      auto ids = entry->find("ids");
      if (ids == entry->end() || !ids->is_array()) {
        return r.Error(internal::StrCat(entry_path, ".ids"), "must be an array");
      }
      for (size_t k = 0; k < ids->size(); ++k) {
        auto id = r.Id((*ids)[k], internal::StrCat(entry_path, ".ids[", k, "]"));
        if (!id.ok()) return id.status();
        (seen_sequence ? suffix : prefix)->push_back(*id);
      }
    }
    if (!seen_sequence) return r.Error(single_path, "has no Sequence \"A\"");
    return absl::OkStatus();
  }
  return r.Unsupported(
      internal::StrCat(path, ".type"),
      internal::StrCat("\"", *type,
                   "\" is not supported (supported: TemplateProcessing, ByteLevel, "
                   "RobertaProcessing, BertProcessing, Sequence)"));
}

absl::StatusOr<std::unique_ptr<BpeModel>> ParseModel(const Reader& r, const Json& j) {
  if (!j.is_object()) return r.Error("model", "must be an object");
  auto type = r.OptString(j, "type", "model");
  if (!type.ok()) return type.status();
  if (type->has_value() && **type != "BPE") {
    return r.Unsupported("model.type", internal::StrCat("\"", **type, "\" is not supported (only BPE)"));
  }
  if (auto it = j.find("dropout"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) return r.Error("model.dropout", "must be a number or null");
    if (it->get<double>() != 0.0) return r.Unsupported("model.dropout", "must be null or 0");
  }
  BpeOptions options;
  auto ignore = r.Bool(j, "ignore_merges", "model", false);
  auto fallback = r.Bool(j, "byte_fallback", "model", false);
  auto fuse = r.Bool(j, "fuse_unk", "model", false);
  auto unk = r.OptString(j, "unk_token", "model");
  auto prefix = r.OptString(j, "continuing_subword_prefix", "model");
  auto suffix = r.OptString(j, "end_of_word_suffix", "model");
  for (const absl::Status& s : {ignore.status(), fallback.status(), fuse.status(), unk.status(),
                                prefix.status(), suffix.status()}) {
    if (!s.ok()) return s;
  }
  options.ignore_merges = *ignore;
  options.byte_fallback = *fallback;
  options.fuse_unk = *fuse;
  options.unk_token = *unk;
  options.continuing_subword_prefix = prefix->value_or("");
  options.end_of_word_suffix = suffix->value_or("");

  auto vocab_it = j.find("vocab");
  if (vocab_it == j.end() || !vocab_it->is_object()) return r.Error("model.vocab", "must be an object");
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(vocab_it->size());
  for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
    auto id = r.Id(it.value(), internal::StrCat("model.vocab[\"", it.key(), "\"]"));
    if (!id.ok()) return id.status();
    vocab.emplace_back(it.key(), *id);
  }
  auto merges_it = j.find("merges");
  std::vector<std::pair<std::string, std::string>> merges;
  if (merges_it != j.end() && !merges_it->is_null()) {
    if (!merges_it->is_array()) return r.Error("model.merges", "must be an array");
    merges.reserve(merges_it->size());
    for (size_t i = 0; i < merges_it->size(); ++i) {
      const Json& m = (*merges_it)[i];
      const std::string path = internal::StrCat("model.merges[", i, "]");
      if (m.is_string()) {  // legacy "a b"
        const std::string& s = m.get_ref<const std::string&>();
        const size_t space = s.find(' ');
        if (space == std::string::npos) return r.Error(path, "must be \"left right\"");
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return r.Error(path, "must be \"left right\" or [left, right]");
      }
    }
  }
  return BpeModel::Create(std::move(vocab), merges, std::move(options), r.file());
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Reader& r, const Json& root) {
  std::vector<AddedToken> out;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return out;
  if (!it->is_array()) return r.Error("added_tokens", "must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& t = (*it)[i];
    const std::string path = internal::StrCat("added_tokens[", i, "]");
    if (!t.is_object()) return r.Error(path, "must be an object");
    AddedToken token;
    auto id_it = t.find("id");
    if (id_it == t.end()) return r.Error(internal::StrCat(path, ".id"), "is missing");
    auto id = r.Id(*id_it, internal::StrCat(path, ".id"));
    auto content = r.String(t, "content", path);
    auto special = r.Bool(t, "special", path, false);
    auto single = r.Bool(t, "single_word", path, false);
    auto lstrip = r.Bool(t, "lstrip", path, false);
    auto rstrip = r.Bool(t, "rstrip", path, false);
    for (const absl::Status& s : {id.status(), content.status(), special.status(),
                                  single.status(), lstrip.status(), rstrip.status()}) {
      if (!s.ok()) return s;
    }
    auto normalized = r.Bool(t, "normalized", path, !*special);
    if (!normalized.ok()) return normalized.status();
    token.id = *id;
    token.content = *content;
    token.special = *special;
    token.single_word = *single;
    token.lstrip = *lstrip;
    token.rstrip = *rstrip;
    token.normalized = *normalized;
    out.push_back(std::move(token));
  }
  return out;
}

// bos/eos from tokenizer_config.json ("bos_token": "<s>" or {"content": ...}).
std::optional<std::string> ConfigToken(const Json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(std::string_view json_text,
                                                 std::string_view filename,
                                                 const Json* config) {
  const Reader r(filename);
  Json root = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return r.Error("(document)", "is not valid JSON");
  if (!root.is_object()) return r.Error("(document)", "must be a JSON object");

  BpeTokenizerParts parts;
  parts.source = std::string(filename);
  auto model_it = root.find("model");
  if (model_it == root.end()) return r.Error("model", "is missing");
  auto model = ParseModel(r, *model_it);
  if (!model.ok()) return model.status();
  parts.model = std::move(*model);

  auto added = ParseAddedTokens(r, root);
  if (!added.ok()) return added.status();
  parts.added_tokens = std::move(*added);

  static const Json kNull;
  auto field = [&root](const char* key) -> const Json& {
    auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  auto normalizer = ParseNormalizer(r, field("normalizer"), "normalizer", 0);
  if (!normalizer.ok()) return normalizer.status();
  parts.normalizer = std::move(*normalizer);
  auto pre = ParsePreTokenizer(r, field("pre_tokenizer"), "pre_tokenizer", 0);
  if (!pre.ok()) return pre.status();
  parts.pre_tokenizer = std::move(*pre);
  if (field("decoder").is_null()) return r.Unsupported("decoder", "is missing (need ByteLevel)");
  if (absl::Status s = ParseDecoder(r, field("decoder"), "decoder", 0); !s.ok()) return s;
  if (absl::Status s = ParsePostProcessor(r, field("post_processor"), "post_processor", 0,
                                          &parts.prefix_ids, &parts.suffix_ids);
      !s.ok()) {
    return s;
  }

  // bos/eos: tokenizer_config.json when given, else what the post-processor
  // adds, else the usual names.
  auto lookup = [&parts](std::string_view content) -> std::optional<int32_t> {
    for (const AddedToken& t : parts.added_tokens) {
      if (t.content == content) return t.id;
    }
    return parts.model->TokenToId(content);
  };
  if (config != nullptr) {
    if (auto bos = ConfigToken(*config, "bos_token")) parts.bos_id = lookup(*bos);
    if (auto eos = ConfigToken(*config, "eos_token")) parts.eos_id = lookup(*eos);
  }
  if (!parts.bos_id && !parts.prefix_ids.empty()) parts.bos_id = parts.prefix_ids.front();
  if (!parts.eos_id && !parts.suffix_ids.empty()) parts.eos_id = parts.suffix_ids.back();
  for (const char* name : {"<|begin_of_text|>", "<s>", "<bos>"}) {
    if (!parts.bos_id) parts.bos_id = lookup(name);
  }
  for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"}) {
    if (!parts.eos_id) parts.eos_id = lookup(name);
  }
  return MakeBpeTokenizer(std::move(parts));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(internal::StrCat(path, ": cannot open"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(internal::StrCat(path, ": read failed"));
  return ss.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json_text,
                                                              std::string_view filename) {
  try {
    return Parse(json_text, filename, nullptr);
  } catch (const std::exception& e) {  // nlohmann surprises; never escape
    return absl::InvalidArgumentError(internal::StrCat(filename, ": ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizerJson(std::string_view json_text) {
  const Reader r("(pre_tokenizer)");
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return r.Error("(document)", "is not valid JSON");
  try {
    return ParsePreTokenizer(r, j, "pre_tokenizer", 0);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  // tokenizer_config.json beside it names bos/eos; it is optional.
  Json config;
  const std::filesystem::path config_path =
      std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) {
    auto config_text = ReadFile(config_path.string());
    if (!config_text.ok()) return config_text.status();
    config = Json::parse(*config_text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(
          internal::StrCat(config_path.string(), ": is not a JSON object"));
    }
  }
  try {
    return Parse(*text, path, config.is_object() ? &config : nullptr);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(internal::StrCat(path, ": ", e.what()));
  }
}

}  // namespace linearize::tokenizer
