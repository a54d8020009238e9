#include "common/convert/teacher.h"

#include <ATen/ATen.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/convert/fs_util.h"
#include "common/convert/hf_tokenizer.h"
#include "common/io/gguf.h"
#include "common/io/hf_config_writer.h"
#include "common/io/model_config.h"

namespace linearize::convert {
namespace {

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

// Files of a Hugging Face directory that the converted model keeps as they are.
constexpr const char* kCopiedFiles[] = {
    "tokenizer.json",          "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json",     "chat_template.jinja",
    "generation_config.json",
};

// "path: 3 files, 1234 bytes ..." from the weight files' sizes, so that a
// resumed run notices a different teacher behind the same path.
std::string DirectoryIdentity(const std::string& dir) {
  std::map<std::string, int64_t> sizes;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (absl::EndsWith(name, ".safetensors") || name == "config.json") {
        sizes[name] = FileSize(dir + "/" + name);
      }
    }
    ::closedir(d);
  }
  std::string id = dir;
  for (const auto& [name, size] : sizes) absl::StrAppend(&id, " ", name, ":", size);
  return id;
}

absl::StatusOr<Teacher> FromDirectory(const std::string& dir, const model::LoadOptions& options) {
  Teacher t;
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(dir, options);
  if (!loaded.ok()) return loaded.status();
  t.loaded = *std::move(loaded);
  absl::StatusOr<std::string> text = ReadFile(dir + "/config.json");
  if (!text.ok()) return text.status();
  t.config_json = nlohmann::json::parse(*text, nullptr, false);
  if (t.config_json.is_discarded() || !t.config_json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json: not a JSON object"));
  }
  for (const char* name : kCopiedFiles) {
    const std::string path = absl::StrCat(dir, "/", name);
    if (!PathExists(path)) continue;
    absl::StatusOr<std::string> contents = ReadFile(path);
    if (!contents.ok()) return contents.status();
    t.files.emplace_back(name, *std::move(contents));
  }
  t.description = absl::StrCat("`", dir, "` (Hugging Face checkpoint)");
  t.identity = DirectoryIdentity(dir);
  return t;
}

// The written tokenizer must encode like the GGUF's own: a probe with
// words, spaces, digits, punctuation, accents, CJK and the EOS token.
absl::Status CheckTokenizer(const std::string& path, const tokenizer::Tokenizer& gguf_tokenizer,
                            const HfTokenizerFiles& files) {
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> written;
  std::string name = "tokenizer.json";
  if (!files.tokenizer_json.empty()) {
    written = tokenizer::ParseTokenizerJson(files.tokenizer_json, name);
  } else {
    // LoadSentencePiece reads a file.
    name = "tokenizer.model";
    std::string tmp = "/tmp/linearize-tokenizer-XXXXXX";
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0) return Errno("cannot create", tmp);
    ::close(fd);
    absl::Status s = WriteFileAtomic(tmp, files.tokenizer_model);
    written = s.ok() ? tokenizer::LoadSentencePiece(tmp)
                     : absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>>(s);
    ::unlink(tmp.c_str());
  }
  if (!written.ok()) {
    return absl::InternalError(absl::StrCat("the ", name, " written for ", path,
                                            " does not load: ", written.status().message()));
  }
  std::string probe =
      "Hello world! It's 2024-05-17, 12345678 items cost $3.50.\n\n\tcafé naïve 東京 "
      "   spaces   x+=1;  ";
  if (std::optional<int32_t> eos = gguf_tokenizer.eos_id()) {
    absl::StrAppend(&probe, gguf_tokenizer.TokenBytes(*eos), " done");
  }
  for (bool special : {false, true}) {
    if (gguf_tokenizer.Encode(probe, special) != (*written)->Encode(probe, special)) {
      return absl::InternalError(absl::StrCat(
          "the ", name, " written for ", path,
          " encodes differently from the GGUF tokenizer (add_special_tokens=", special, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Teacher> FromGguf(const std::string& path, const model::LoadOptions& options) {
  absl::StatusOr<std::unique_ptr<io::GgufFile>> gguf = io::GgufFile::Open(path);
  if (!gguf.ok()) return gguf.status();
  absl::StatusOr<nlohmann::json> config_json = io::HfConfigFromGguf(**gguf, "float32");
  if (!config_json.ok()) return config_json.status();
  absl::StatusOr<io::ModelConfig> config =
      io::ParseHfConfig(config_json->dump(), absl::StrCat("config.json derived from ", path));
  if (!config.ok()) return config.status();
  absl::StatusOr<HfTokenizerFiles> tok =
      HfTokenizerFromGguf(**gguf, config->max_position_embeddings);
  if (!tok.ok()) return tok.status();

  Teacher t;
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(path, options);
  if (!loaded.ok()) return loaded.status();
  t.loaded = *std::move(loaded);
  if (t.loaded.tokenizer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": has no tokenizer"));
  }
  if (absl::Status s = CheckTokenizer(path, *t.loaded.tokenizer, *tok); !s.ok()) {
    return s;
  }
  // Rebuild from the Hugging Face view (see Teacher::loaded).
  model::ModelWeights weights = t.loaded.model->weights();
  weights.rope_freq_factors = at::Tensor();
  absl::StatusOr<std::unique_ptr<model::LlamaModel>> m =
      model::LlamaModel::Create(*config, std::move(weights));
  if (!m.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", m.status().message()));
  t.loaded.model = *std::move(m);
  t.loaded.config = *config;
  t.config_json = *std::move(config_json);

  int64_t pad = -1;
  if (auto it = t.config_json.find("pad_token_id");
      it != t.config_json.end() && it->is_number_integer()) {
    pad = it->get<int64_t>();
  }
  if (!tok->tokenizer_json.empty())
    t.files.emplace_back("tokenizer.json", std::move(tok->tokenizer_json));
  if (!tok->tokenizer_model.empty()) {
    t.files.emplace_back("tokenizer.model", std::move(tok->tokenizer_model));
  }
  t.files.emplace_back("tokenizer_config.json", std::move(tok->tokenizer_config_json));
  t.files.emplace_back("special_tokens_map.json", std::move(tok->special_tokens_map_json));
  t.files.emplace_back("generation_config.json",
                       io::HfGenerationConfigJson(*config, pad).dump(2) + "\n");

  std::map<std::string, int> types;
  for (const io::GgufTensor& tensor : (*gguf)->tensors()) {
    ++types[std::string(io::GgmlTypeName(tensor.type))];
  }
  std::string counts;
  for (const auto& [type, n] : types) {
    absl::StrAppend(&counts, counts.empty() ? "" : ", ", type, " x", n);
  }
  t.gguf = true;
  t.description = absl::StrCat("`", path, "` (GGUF; tensors ", counts, "; dequantized to ",
                               options.weights.dtype == at::kBFloat16 ? "bfloat16" : "float32",
                               ")");
  t.identity = absl::StrCat(path, " ", FileSize(path));
  return t;
}

}  // namespace

absl::StatusOr<Teacher> LoadTeacher(const std::string& path, const model::WeightOptions& weights,
                                    const std::optional<model::LayerRange>& layers) {
  model::LoadOptions options;
  options.weights = weights;
  options.layers = layers;
  if (!PathExists(path)) {
    return absl::NotFoundError(absl::StrCat("teacher ", path, " does not exist"));
  }
  absl::StatusOr<Teacher> t;
  try {
    if (IsDirectory(path)) {
      t = FromDirectory(path, options);
    } else if (absl::EndsWithIgnoreCase(path, ".gguf")) {
      t = FromGguf(path, options);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("teacher ", path, " is neither a Hugging Face directory nor a .gguf file"));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("loading ", path, ": ", e.what_without_backtrace()));
  }
  if (!t.ok()) return t.status();
  if (t->loaded.linear_attention) {
    return absl::InvalidArgumentError(absl::StrCat(
        "teacher ", path, " is already a converted model (config.json has linear_attention)"));
  }
  return t;
}

}  // namespace linearize::convert
