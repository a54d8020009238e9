#include "common/model/load.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/gguf.h"
#include "common/model/delta_load.h"
#include "common/model/gguf_weights.h"
#include "common/model/linear_attention_load.h"
#include "common/model/safetensors_weights.h"
#include "nlohmann/json.hpp"

#ifndef LINEARIZE_DEFAULT_MODEL_DIR
#define LINEARIZE_DEFAULT_MODEL_DIR ""
#endif

namespace linearize::model {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// tokenizer_config.json's "chat_template": a string, or a list of
// {"name", "template"} of which "default" is the one used for chat.
absl::StatusOr<std::string> ChatTemplateFromDir(const fs::path& dir) {
  const fs::path jinja = dir / "chat_template.jinja";
  if (fs::exists(jinja)) return ReadText(jinja);
  const fs::path config = dir / "tokenizer_config.json";
  if (!fs::exists(config)) return std::string();
  absl::StatusOr<std::string> text = ReadText(config);
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config.string(), ": not a JSON object"));
  }
  const auto it = j.find("chat_template");
  if (it == j.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" &&
          entry.contains("template") && entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      config.string(), ": chat_template must be a string or a list with a \"default\" entry"));
}

absl::StatusOr<LoadedModel> LoadDirectory(const fs::path& dir, const LoadOptions& options) {
  // A delta over a base model (delta_load.h) has only the student's own tensors.
  if (absl::StatusOr<std::string> text = ReadText(dir / "config.json"); text.ok()) {
    const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("linearize_delta")) {
      if (options.layers) {
        return absl::InvalidArgumentError(absl::StrCat(
            dir.string(), ": a delta directory loads whole (no layer range: its LoRA merges into "
            "every layer of the base)"));
      }
      return LoadDelta(dir.string(), j["linearize_delta"], options);
    }
  }
  LoadedModel out;
  absl::StatusOr<io::ModelConfig> config = io::ReadHfConfig((dir / "config.json").string());
  if (!config.ok()) return config.status();
  out.config = *std::move(config);
  absl::StatusOr<ModelWeights> weights =
      LoadSafetensorsWeights(dir.string(), out.config, options.weights, options.layers);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Create(out.config, *std::move(weights));
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(dir.string(), ": ", model.status().message()));
  }
  out.model = *std::move(model);
  absl::StatusOr<std::optional<LinearAttentionConfig>> linear =
      ApplyLinearAttentionFromDir(dir.string(), out.model.get());
  if (!linear.ok()) return linear.status();
  out.linear_attention = *std::move(linear);

  if (fs::exists(dir / "tokenizer.json")) {
    auto tok = tokenizer::LoadTokenizerJson((dir / "tokenizer.json").string());
    if (!tok.ok()) return tok.status();
    out.tokenizer = *std::move(tok);
  } else if (fs::exists(dir / "tokenizer.model")) {
    auto tok = tokenizer::LoadSentencePiece((dir / "tokenizer.model").string());
    if (!tok.ok()) return tok.status();
    out.tokenizer = *std::move(tok);
  }
  absl::StatusOr<std::string> chat_template = ChatTemplateFromDir(dir);
  if (!chat_template.ok()) return chat_template.status();
  out.chat_template = *std::move(chat_template);
  return out;
}

absl::StatusOr<LoadedModel> LoadGguf(const std::string& path, const LoadOptions& options) {
  LoadedModel out;
  absl::StatusOr<std::unique_ptr<io::GgufFile>> gguf = io::GgufFile::Open(path);
  if (!gguf.ok()) return gguf.status();
  absl::StatusOr<io::ModelConfig> config = io::ModelConfigFromGguf(**gguf);
  if (!config.ok()) return config.status();
  out.config = *std::move(config);
  absl::StatusOr<ModelWeights> weights =
      LoadGgufWeights(**gguf, out.config, options.weights, options.layers);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Create(out.config, *std::move(weights));
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", model.status().message()));
  }
  out.model = *std::move(model);
  auto tok = tokenizer::TokenizerFromGguf(**gguf);
  if (!tok.ok()) return tok.status();
  out.tokenizer = *std::move(tok);
  if ((*gguf)->Find("tokenizer.chat_template") != nullptr) {
    absl::StatusOr<std::string> chat_template = (*gguf)->GetString("tokenizer.chat_template");
    if (!chat_template.ok()) return chat_template.status();
    out.chat_template = *std::move(chat_template);
  }
  return out;
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return absl::NotFoundError(absl::StrCat("model path ", path, " does not exist"));
  }
  absl::StatusOr<LoadedModel> out;
  try {
    if (fs::is_directory(st)) {
      out = LoadDirectory(path, options);
    } else if (absl::EndsWithIgnoreCase(path, ".gguf")) {
      out = LoadGguf(path, options);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "model path ", path, " is neither a directory (Hugging Face layout) nor a .gguf file"));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("loading ", path, ": ", e.what_without_backtrace()));
  }
  if (!out.ok()) return out.status();
  out->path = path;
  if (out->tokenizer != nullptr) {
    out->chat_format = tokenizer::DetectChatFormat(out->chat_template, *out->tokenizer);
  }
  out->default_system_prompt = tokenizer::DefaultSystemPrompt(out->chat_template);
  return out;
}

absl::StatusOr<std::string> FindDefaultModel() {
  if (const char* env = std::getenv("LINEARIZE_MODEL"); env != nullptr && *env != '\0') {
    if (!fs::exists(env)) {
      return absl::NotFoundError(
          absl::StrCat("LINEARIZE_MODEL is set to ", env, ", which does not exist"));
    }
    return std::string(env);
  }
  const std::string dir = LINEARIZE_DEFAULT_MODEL_DIR;
  const fs::path path = fs::path(dir) / std::string(kDefaultModelFile);
  if (!dir.empty() && fs::exists(path)) return path.string();
  return absl::NotFoundError(absl::StrCat(
      "the default model ", std::string(kDefaultModelFile), " is not in ",
      dir.empty() ? std::string("(no LINEARIZE_DEFAULT_MODEL_DIR)") : dir,
      "; run scripts/setup to install it, or set LINEARIZE_MODEL to a model file or directory"));
}

std::vector<int32_t> StopTokenIds(const LoadedModel& loaded) {
  std::vector<int32_t> ids;
  auto add = [&](int64_t id) {
    if (id < 0 || id >= loaded.config.vocab_size) return;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(static_cast<int32_t>(id));
  };
  for (int64_t id : loaded.config.eos_token_ids) add(id);
  if (loaded.tokenizer != nullptr) {
    if (auto eos = loaded.tokenizer->eos_id()) add(*eos);
    for (const std::string& token : tokenizer::ChatStopTokens(loaded.chat_format)) {
      if (auto id = loaded.tokenizer->TokenId(token)) add(*id);
    }
  }
  return ids;
}

}  // namespace linearize::model
