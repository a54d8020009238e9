#include "common/io/model_config.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "common/io/gguf.h"
#include "common/io/json_util.h"
#include "common/io/mapped_file.h"
#include "common/io/str_util.h"
#include "nlohmann/json.hpp"

namespace linearize::io {
namespace {

using nlohmann::json;

// Sizes beyond this are corrupt, and would overflow 32-bit index math.
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

absl::Status UnsupportedArchitecture(std::string_view file, std::string_view arch) {
  return absl::InvalidArgumentError(internal::StrCat(file, ": unsupported architecture \"", arch,
                                                 "\" (supported: ",
                                                 absl::StrJoin(SupportedArchitectures(), ", "),
                                                 ")"));
}

bool IsSupported(std::string_view arch) {
  for (const std::string& a : SupportedArchitectures()) {
    if (a == arch) return true;
  }
  return false;
}

// Checks the fields every architecture needs, and fills in head_dim.
absl::Status Validate(std::string_view file, ModelConfig* c) {
  auto positive = [&](std::string_view field, int64_t v) -> absl::Status {
    if (v <= 0 || v > kMaxDim) {
      return absl::InvalidArgumentError(
          internal::StrCat(file, ": ", field, " = ", v, " is not a positive size up to ", kMaxDim));
    }
    return absl::OkStatus();
  };
  for (auto [field, v] : {std::pair<std::string_view, int64_t>{"vocab_size", c->vocab_size},
                          {"hidden_size", c->hidden_size},
                          {"intermediate_size", c->intermediate_size},
                          {"num_hidden_layers", c->num_hidden_layers},
                          {"num_attention_heads", c->num_attention_heads},
                          {"num_key_value_heads", c->num_key_value_heads},
                          {"max_position_embeddings", c->max_position_embeddings}}) {
    if (absl::Status s = positive(field, v); !s.ok()) return s;
  }
  if (c->num_attention_heads % c->num_key_value_heads != 0) {
    return absl::InvalidArgumentError(internal::StrCat(
        file, ": num_attention_heads = ", c->num_attention_heads,
        " is not a multiple of num_key_value_heads = ", c->num_key_value_heads));
  }
  if (c->head_dim == 0) {
    if (c->hidden_size % c->num_attention_heads != 0) {
      return absl::InvalidArgumentError(internal::StrCat(
          file, ": hidden_size = ", c->hidden_size, " is not a multiple of num_attention_heads = ",
          c->num_attention_heads, " and head_dim is not given"));
    }
    c->head_dim = c->hidden_size / c->num_attention_heads;
  }
  if (absl::Status s = positive("head_dim", c->head_dim); !s.ok()) return s;
  if (c->head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        internal::StrCat(file, ": head_dim = ", c->head_dim, " must be even for RoPE"));
  }
  if (!(c->rms_norm_eps > 0) || !std::isfinite(c->rms_norm_eps)) {
    return absl::InvalidArgumentError(
        internal::StrCat(file, ": rms_norm_eps = ", c->rms_norm_eps, " must be positive"));
  }
  if (!(c->rope_theta > 0) || !std::isfinite(c->rope_theta)) {
    return absl::InvalidArgumentError(
        internal::StrCat(file, ": rope_theta = ", c->rope_theta, " must be positive"));
  }
  const RopeScaling& r = c->rope_scaling;
  if (!r.type.empty() && (!(r.factor > 0) || !std::isfinite(r.factor))) {
    return absl::InvalidArgumentError(
        internal::StrCat(file, ": rope_scaling.factor = ", r.factor, " must be positive"));
  }
  if (r.type == "llama3") {
    if (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
        !std::isfinite(r.high_freq_factor) || r.original_max_position_embeddings <= 0) {
      return absl::InvalidArgumentError(internal::StrCat(
          file, ": rope_scaling needs 0 < low_freq_factor < high_freq_factor and a positive "
                "original_max_position_embeddings"));
    }
  }
  return absl::OkStatus();
}

// Reads typed fields of one JSON object; errors name the file and the field.
class JsonFields {
 public:
  JsonFields(const json& obj, std::string_view file, std::string prefix = "")
      : obj_(obj), file_(file), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool Has(std::string_view key) const {
    auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }
  const json* Get(std::string_view key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  absl::Status Int(std::string_view key, int64_t* out, bool required) const {
    const json* v = Get(key);
    if (v == nullptr) return required ? Missing(key) : absl::OkStatus();
    std::optional<int64_t> i = internal::JsonI64(*v);
    if (!i) return Wrong(key, "an integer");
    *out = *i;
    return absl::OkStatus();
  }
  absl::Status Float(std::string_view key, double* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return Wrong(key, "a number");
    *out = v->get<double>();
    return absl::OkStatus();
  }
  absl::Status Bool(std::string_view key, bool* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return Wrong(key, "true or false");
    *out = v->get<bool>();
    return absl::OkStatus();
  }
  absl::Status String(std::string_view key, std::string* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return Wrong(key, "a string");
    *out = v->get<std::string>();
    return absl::OkStatus();
  }
  // An integer or a list of integers (token ids).
  absl::Status IntList(std::string_view key, std::vector<int64_t>* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (std::optional<int64_t> i = internal::JsonI64(*v)) {
      *out = {*i};
      return absl::OkStatus();
    }
    if (!v->is_array()) return Wrong(key, "an integer or a list of integers");
    out->clear();
    for (const json& e : *v) {
      std::optional<int64_t> i = internal::JsonI64(e);
      if (!i) return Wrong(key, "an integer or a list of integers");
      out->push_back(*i);
    }
    return absl::OkStatus();
  }

  absl::Status Missing(std::string_view key) const {
    return absl::InvalidArgumentError(
        internal::StrCat(file_, ": required field \"", prefix_, key, "\" is missing"));
  }
  absl::Status Wrong(std::string_view key, std::string_view expected) const {
    return absl::InvalidArgumentError(
        internal::StrCat(file_, ": field \"", prefix_, key, "\" must be ", expected));
  }

 private:
  const json& obj_;
  std::string_view file_;
  std::string prefix_;
};

// Reads a rope_scaling / rope_parameters object (either key spelling of the type).
absl::Status ParseRopeScaling(const json& obj, std::string_view file, std::string_view field,
                              RopeScaling* out) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(internal::StrCat(file, ": \"", field, "\" must be an object"));
  }
  JsonFields f(obj, file, internal::StrCat(field, "."));
  std::string type;
  if (absl::Status s = f.String("rope_type", &type); !s.ok()) return s;
  if (type.empty()) {
    if (absl::Status s = f.String("type", &type); !s.ok()) return s;
  }
  if (type.empty() || type == "default") {
    *out = RopeScaling{};
    return absl::OkStatus();
  }
  if (type != "llama3" && type != "linear") {
    return absl::InvalidArgumentError(internal::StrCat(
        file, ": ", field, " type \"", type, "\" is not supported (supported: llama3, linear)"));
  }
  RopeScaling r;
  r.type = type;
  if (!f.Has("factor")) return f.Missing("factor");
  for (absl::Status s : {f.Float("factor", &r.factor),
                         f.Float("low_freq_factor", &r.low_freq_factor),
                         f.Float("high_freq_factor", &r.high_freq_factor),
                         f.Int("original_max_position_embeddings",
                               &r.original_max_position_embeddings, false)}) {
    if (!s.ok()) return s;
  }
  *out = std::move(r);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ArchitectureFromJson(const JsonFields& f) {
  std::string model_type;
  if (absl::Status s = f.String("model_type", &model_type); !s.ok()) return s;
  if (!model_type.empty()) return model_type;
  const json* archs = f.Get("architectures");
  if (archs != nullptr && archs->is_array() && !archs->empty() && (*archs)[0].is_string()) {
    const std::string& cls = (*archs)[0].get_ref<const std::string&>();
    if (cls == "LlamaForCausalLM") return std::string("llama");
    if (cls == "MistralForCausalLM") return std::string("mistral");
    if (cls == "Qwen2ForCausalLM") return std::string("qwen2");
    return cls;
  }
  return f.Missing("model_type");
}

}  // namespace

const std::vector<std::string>& SupportedArchitectures() {
  static const auto* kArchs = new std::vector<std::string>{"llama", "mistral", "qwen2"};
  return *kArchs;
}

absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view filename) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(internal::StrCat(filename, ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(internal::StrCat(filename, ": not a JSON object"));
  }
  JsonFields f(root, filename);
  ModelConfig c;
  absl::StatusOr<std::string> arch = ArchitectureFromJson(f);
  if (!arch.ok()) return arch.status();
  if (!IsSupported(*arch)) return UnsupportedArchitecture(filename, *arch);
  c.architecture = *arch;

  for (absl::Status s : {f.Int("vocab_size", &c.vocab_size, true),
                         f.Int("hidden_size", &c.hidden_size, true),
                         f.Int("intermediate_size", &c.intermediate_size, true),
                         f.Int("num_hidden_layers", &c.num_hidden_layers, true),
                         f.Int("num_attention_heads", &c.num_attention_heads, true),
                         f.Int("head_dim", &c.head_dim, false),
                         f.Int("max_position_embeddings", &c.max_position_embeddings, false),
                         f.Float("rms_norm_eps", &c.rms_norm_eps),
                         f.Bool("tie_word_embeddings", &c.tie_word_embeddings),
                         f.IntList("bos_token_id", &c.bos_token_ids),
                         f.IntList("eos_token_id", &c.eos_token_ids)}) {
    if (!s.ok()) return s;
  }
  c.num_key_value_heads = c.num_attention_heads;
  if (absl::Status s = f.Int("num_key_value_heads", &c.num_key_value_heads, false); !s.ok()) {
    return s;
  }
  if (absl::Status s = f.String("torch_dtype", &c.torch_dtype); !s.ok()) return s;
  if (c.torch_dtype.empty()) {  // transformers 5 spells it "dtype"
    if (absl::Status s = f.String("dtype", &c.torch_dtype); !s.ok()) return s;
  }

  // RoPE: transformers 4 has rope_theta + rope_scaling; 5 has rope_parameters
  // holding both.
  if (const json* params = f.Get("rope_parameters")) {
    if (absl::Status s = ParseRopeScaling(*params, filename, "rope_parameters", &c.rope_scaling);
        !s.ok()) {
      return s;
    }
    if (params->is_object()) {
      if (absl::Status s = JsonFields(*params, filename, "rope_parameters.")
                               .Float("rope_theta", &c.rope_theta);
          !s.ok()) {
        return s;
      }
    }
  }
  if (absl::Status s = f.Float("rope_theta", &c.rope_theta); !s.ok()) return s;
  if (const json* scaling = f.Get("rope_scaling")) {
    if (absl::Status s = ParseRopeScaling(*scaling, filename, "rope_scaling", &c.rope_scaling);
        !s.ok()) {
      return s;
    }
  }

  if (c.architecture == "qwen2") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases
    bool use_sliding = false;
    if (absl::Status s = f.Bool("use_sliding_window", &use_sliding); !s.ok()) return s;
    if (use_sliding) {
      int64_t w = 0;
      if (absl::Status s = f.Int("sliding_window", &w, true); !s.ok()) return s;
      c.sliding_window = w;
    }
  } else {
    if (c.architecture == "llama") {
      if (absl::Status s = f.Bool("attention_bias", &c.attention_bias); !s.ok()) return s;
    }
    if (f.Has("sliding_window")) {
      int64_t w = 0;
      if (absl::Status s = f.Int("sliding_window", &w, true); !s.ok()) return s;
      c.sliding_window = w;
    }
  }
  if (absl::Status s = Validate(filename, &c); !s.ok()) return s;
  return c;
}

absl::StatusOr<ModelConfig> ReadHfConfig(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  std::span<const std::byte> bytes = (*file)->bytes();
  return ParseHfConfig(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                       path);
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf) {
  const std::string& file = gguf.name();
  absl::StatusOr<std::string> arch = gguf.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch != "llama" && *arch != "qwen2") return UnsupportedArchitecture(file, *arch);
  ModelConfig c;
  c.architecture = *arch;
  const std::string p = *arch + ".";

  auto get_int = [&](std::string_view key, int64_t* out, bool required) -> absl::Status {
    absl::StatusOr<int64_t> v = gguf.GetInt(internal::StrCat(p, key));
    if (v.ok()) {
      *out = *v;
    } else if (required || !absl::IsNotFound(v.status())) {
      return v.status();
    }
    return absl::OkStatus();
  };
  auto get_float = [&](std::string_view key, double* out, bool required) -> absl::Status {
    absl::StatusOr<double> v = gguf.GetFloat(internal::StrCat(p, key));
    if (v.ok()) {
      *out = *v;
    } else if (required || !absl::IsNotFound(v.status())) {
      return v.status();
    }
    return absl::OkStatus();
  };

  for (absl::Status s : {get_int("block_count", &c.num_hidden_layers, true),
                         get_int("embedding_length", &c.hidden_size, true),
                         get_int("feed_forward_length", &c.intermediate_size, true),
                         get_int("attention.head_count", &c.num_attention_heads, true),
                         get_int("context_length", &c.max_position_embeddings, true),
                         get_float("attention.layer_norm_rms_epsilon", &c.rms_norm_eps, true),
                         get_float("rope.freq_base", &c.rope_theta, false)}) {
    if (!s.ok()) return s;
  }
  c.num_key_value_heads = c.num_attention_heads;
  if (absl::Status s = get_int("attention.head_count_kv", &c.num_key_value_heads, false); !s.ok()) {
    return s;
  }
  // head_dim: the key length when given, else the rotary dimension count.
  if (absl::Status s = get_int("attention.key_length", &c.head_dim, false); !s.ok()) return s;
  if (c.head_dim == 0) {
    if (absl::Status s = get_int("rope.dimension_count", &c.head_dim, false); !s.ok()) return s;
  }

  if (absl::Status s = get_int("vocab_size", &c.vocab_size, false); !s.ok()) return s;
  if (c.vocab_size == 0) {
    const GgufValue* tokens = gguf.Find("tokenizer.ggml.tokens");
    const GgufArray* array = tokens ? std::get_if<GgufArray>(&tokens->v) : nullptr;
    if (array == nullptr) {
      return absl::InvalidArgumentError(internal::StrCat(
          file, ": neither ", p, "vocab_size nor the array tokenizer.ggml.tokens is present"));
    }
    c.vocab_size = static_cast<int64_t>(array->size());
  }

  // RoPE scaling: only linear is expressible in the config (llama3-style
  // scaling comes as a rope_freqs.weight tensor, which the loader reads).
  absl::StatusOr<std::string> scaling = gguf.GetString(p + "rope.scaling.type");
  if (scaling.ok() && *scaling != "none") {
    if (*scaling != "linear") {
      return absl::InvalidArgumentError(internal::StrCat(file, ": ", p, "rope.scaling.type \"",
                                                     *scaling, "\" is not supported (linear)"));
    }
    c.rope_scaling.type = "linear";
    if (absl::Status s = get_float("rope.scaling.factor", &c.rope_scaling.factor, true); !s.ok()) {
      return s;
    }
  } else if (!scaling.ok() && !absl::IsNotFound(scaling.status())) {
    return scaling.status();
  }

  for (auto [key, out] : {std::pair<const char*, std::vector<int64_t>*>{
                              "tokenizer.ggml.bos_token_id", &c.bos_token_ids},
                          {"tokenizer.ggml.eos_token_id", &c.eos_token_ids}}) {
    absl::StatusOr<int64_t> id = gguf.GetInt(key);
    if (id.ok()) {
      *out = {*id};
    } else if (!absl::IsNotFound(id.status())) {
      return id.status();
    }
  }
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = c.architecture == "qwen2";
  if (absl::Status s = Validate(file, &c); !s.ok()) return s;
  return c;
}

}  // namespace linearize::io
