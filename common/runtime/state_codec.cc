#include "common/runtime/state_codec.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/io/sha256.h"

namespace linearize::runtime {
namespace {

constexpr std::string_view kMagic = "LNZSTATE";
constexpr size_t kPrefix = 8 + 4 + 8;  // magic, version, header size
constexpr size_t kDigest = 32;
// Bounds that keep a hostile header from asking for absurd allocations.
constexpr uint64_t kMaxHeaderBytes = 16u << 20;
constexpr int64_t kMaxDims = 8;

struct DTypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DTypeName kDTypes[] = {{at::kFloat, "F32"},   {at::kDouble, "F64"},
                                 {at::kBFloat16, "BF16"}, {at::kHalf, "F16"},
                                 {at::kLong, "I64"},    {at::kInt, "I32"}};

const char* NameOf(at::ScalarType t) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d.name;
  }
  return nullptr;
}

std::optional<at::ScalarType> TypeOf(const std::string& name) {
  for (const auto& d : kDTypes) {
    if (name == d.name) return d.type;
  }
  return std::nullopt;
}

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

template <typename T>
T Get(std::string_view in, size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof(T));
  return v;
}

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("session state: ", what));
}

struct Parsed {
  StateBlobInfo info;
  bool has_logits = false;
  nlohmann::json layers;
  std::string_view data;
};

absl::StatusOr<Parsed> Parse(std::string_view blob) {
  if (blob.size() < kPrefix + kDigest || blob.substr(0, kMagic.size()) != kMagic) {
    return Bad("not a linearize session state (bad magic or too short)");
  }
  const auto digest = io::Sha256Of(blob.substr(0, blob.size() - kDigest));
  if (std::memcmp(digest.data(), blob.data() + blob.size() - kDigest, kDigest) != 0) {
    return Bad("checksum mismatch (the state is corrupt or truncated)");
  }
  Parsed p;
  p.info.format_version = Get<uint32_t>(blob, 8);
  if (p.info.format_version != kStateFormatVersion) {
    return Bad(absl::StrCat("unknown format_version ", p.info.format_version,
                            " (this server reads ", kStateFormatVersion, ")"));
  }
  const uint64_t header_bytes = Get<uint64_t>(blob, 12);
  const size_t body = blob.size() - kPrefix - kDigest;
  if (header_bytes > kMaxHeaderBytes || header_bytes > body) return Bad("header size out of range");
  nlohmann::json header = nlohmann::json::parse(blob.substr(kPrefix, header_bytes), nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Bad("header is not a JSON object");
  if (!header.contains("fingerprint") || !header["fingerprint"].is_string() ||
      !header.contains("position") || !header["position"].is_number_integer() ||
      !header.contains("layers") || !header["layers"].is_array()) {
    return Bad("header lacks fingerprint, position or layers");
  }
  p.info.model_fingerprint = header["fingerprint"].get<std::string>();
  p.info.position = header["position"].get<int64_t>();
  p.has_logits = header.contains("has_logits") && header["has_logits"].is_boolean() &&
                 header["has_logits"].get<bool>();
  if (p.info.position < 0) return Bad("negative position");
  p.layers = std::move(header["layers"]);
  p.data = blob.substr(kPrefix + header_bytes, body - header_bytes);
  return p;
}

// One tensor's entry of the header -> a CPU tensor viewing a copy of its bytes.
absl::StatusOr<std::pair<std::string, at::Tensor>> ReadTensor(const nlohmann::json& e,
                                                              std::string_view data,
                                                              const std::string& where) {
  if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("dtype") ||
      !e["dtype"].is_string() || !e.contains("shape") || !e["shape"].is_array() ||
      !e.contains("offset") || !e["offset"].is_number_unsigned()) {
    return Bad(absl::StrCat(where, ": needs name, dtype, shape and offset"));
  }
  const auto type = TypeOf(e["dtype"].get<std::string>());
  if (!type) return Bad(absl::StrCat(where, ": unknown dtype ", e["dtype"].get<std::string>()));
  std::vector<int64_t> shape;
  if (static_cast<int64_t>(e["shape"].size()) > kMaxDims) return Bad(absl::StrCat(where, ": too many dims"));
  uint64_t numel = 1;
  for (const auto& d : e["shape"]) {
    if (!d.is_number_unsigned()) return Bad(absl::StrCat(where, ": bad shape"));
    const uint64_t n = d.get<uint64_t>();
    if (n > 0 && numel > std::numeric_limits<uint64_t>::max() / n / 16) {
      return Bad(absl::StrCat(where, ": shape too large"));
    }
    numel *= n;
    shape.push_back(static_cast<int64_t>(n));
  }
  const uint64_t nbytes = numel * at::elementSize(*type);
  const uint64_t offset = e["offset"].get<uint64_t>();
  if (offset > data.size() || nbytes > data.size() - offset) {
    return Bad(absl::StrCat(where, ": byte range outside the data"));
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(*type));
  if (nbytes > 0) std::memcpy(t.data_ptr(), data.data() + offset, nbytes);
  return std::make_pair(e["name"].get<std::string>(), t);
}

}  // namespace

absl::StatusOr<std::string> EncodeState(const model::Memory& memory, const at::Tensor& logits,
                                        std::string_view model_fingerprint) {
  if (memory.batch() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("session state: only batch-1 memories are encoded, got ", memory.batch()));
  }
  std::string data;
  nlohmann::json layers = nlohmann::json::array();
  std::vector<model::Memory::LayerTensors> all = memory.Export();
  // The logits travel as one more "layer" after the model's.
  if (logits.defined()) all.push_back({{"logits", logits.reshape({-1})}});
  for (const auto& layer : all) {
    nlohmann::json entries = nlohmann::json::array();
    for (const auto& [name, tensor] : layer) {
      const char* dtype = NameOf(tensor.scalar_type());
      if (dtype == nullptr) {
        return absl::InternalError(absl::StrCat("session state: tensor ", name,
                                                " has an unsupported dtype"));
      }
      const at::Tensor cpu = tensor.to(at::kCPU).contiguous();
      entries.push_back({{"name", name},
                         {"dtype", dtype},
                         {"shape", cpu.sizes().vec()},
                         {"offset", data.size()}});
      data.append(static_cast<const char*>(cpu.data_ptr()), cpu.nbytes());
    }
    layers.push_back(std::move(entries));
  }
  const nlohmann::json header = {{"fingerprint", std::string(model_fingerprint)},
                                 {"position", memory.position()},
                                 {"has_logits", logits.defined()},
                                 {"layers", std::move(layers)}};
  const std::string header_text = header.dump();
  std::string out;
  out.reserve(kPrefix + header_text.size() + data.size() + kDigest);
  out.append(kMagic);
  Put<uint32_t>(out, kStateFormatVersion);
  Put<uint64_t>(out, header_text.size());
  out.append(header_text);
  out.append(data);
  const auto digest = io::Sha256Of(out);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

absl::StatusOr<StateBlobInfo> InspectState(std::string_view blob) {
  auto parsed = Parse(blob);
  if (!parsed.ok()) return parsed.status();
  return parsed->info;
}

absl::StatusOr<SessionState> DecodeState(std::string_view blob, const model::LlamaModel& model,
                                         std::string_view model_fingerprint) {
  auto parsed = Parse(blob);
  if (!parsed.ok()) return parsed.status();
  if (parsed->info.model_fingerprint != model_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("session state belongs to model ", parsed->info.model_fingerprint,
                     ", not to this model (", std::string(model_fingerprint), ")"));
  }
  std::vector<model::Memory::LayerTensors> layers;
  for (size_t i = 0; i < parsed->layers.size(); ++i) {
    const auto& entries = parsed->layers[i];
    if (!entries.is_array()) return Bad(absl::StrCat("layer ", i, " is not a list"));
    model::Memory::LayerTensors tensors;
    for (size_t j = 0; j < entries.size(); ++j) {
      auto t = ReadTensor(entries[j], parsed->data, absl::StrCat("layer ", i, " tensor ", j));
      if (!t.ok()) return t.status();
      tensors.push_back(*std::move(t));
    }
    layers.push_back(std::move(tensors));
  }
  SessionState state;
  if (parsed->has_logits) {
    if (layers.empty() || layers.back().size() != 1 || layers.back()[0].first != "logits" ||
        layers.back()[0].second.dim() != 1 ||
        layers.back()[0].second.size(0) != model.vocab_size()) {
      return Bad(absl::StrCat("logits must be one [", model.vocab_size(), "] tensor"));
    }
    state.logits = layers.back()[0].second.to(model.device(), at::kFloat);
    layers.pop_back();
  }
  state.memory = model.NewMemory(1);
  if (absl::Status s = state.memory->Import(parsed->info.position, layers); !s.ok()) {
    return Bad(std::string(s.message()));
  }
  return state;
}

}  // namespace linearize::runtime
