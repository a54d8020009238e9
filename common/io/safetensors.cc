#include "common/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "common/io/json_util.h"
#include "common/io/str_util.h"
#include "nlohmann/json.hpp"

namespace linearize::io {
namespace {

using nlohmann::json;
using internal::JsonU64;

// The Python package refuses headers above 100 MB; so do we, before parsing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int64_t kMaxRank = 16;

// Parses JSON text into `out`, rejecting duplicate top-level keys (which
// nlohmann would otherwise silently collapse).
absl::Status ParseHeaderJson(std::string_view text, const std::string& file, json* out) {
  std::string duplicate;
  std::set<std::string, std::less<>> keys;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second) duplicate = key;
    }
    return true;
  };
  *out = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    return absl::InvalidArgumentError(internal::StrCat(file, ": header is not valid JSON"));
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(
        internal::StrCat(file, ": tensor \"", duplicate, "\" appears twice in the header"));
  }
  if (!out->is_object()) {
    return absl::InvalidArgumentError(internal::StrCat(file, ": header is not a JSON object"));
  }
  return absl::OkStatus();
}

// Reads the "dtype", "shape" and "data_offsets" of one header entry and
// checks them against the data area of `data_size` bytes.
absl::Status ParseEntry(const std::string& file, const std::string& name, const json& entry,
                        std::span<const std::byte> data_area, TensorView* out) {
  auto fail = [&](std::string_view what) {
    return absl::InvalidArgumentError(internal::StrCat(file, ": tensor \"", name, "\": ", what));
  };
  if (!entry.is_object()) return fail("header entry is not an object");

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return fail("missing string \"dtype\"");
  absl::StatusOr<DType> dtype = ParseDType(dtype_it->get_ref<const std::string&>());
  if (!dtype.ok()) return fail(std::string(dtype.status().message()));

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) return fail("missing array \"shape\"");
  if (static_cast<int64_t>(shape_it->size()) > kMaxRank) {
    return fail(internal::StrCat("shape has ", shape_it->size(), " dimensions (at most ", kMaxRank,
                             ")"));
  }
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  for (const json& dim : *shape_it) {
    std::optional<uint64_t> d = JsonU64(dim);
    if (!d || *d > static_cast<uint64_t>(INT64_MAX)) {
      return fail(internal::StrCat("shape entry ", dim.dump(), " is not a non-negative integer"));
    }
    if (__builtin_mul_overflow(numel, *d, &numel) || numel > static_cast<uint64_t>(INT64_MAX)) {
      return fail("shape has more elements than fit in 64 bits");
    }
    shape.push_back(static_cast<int64_t>(*d));
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(*dtype)), &nbytes)) {
    return fail("tensor byte size overflows 64 bits");
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2) {
    return fail("missing \"data_offsets\" [begin, end]");
  }
  std::optional<uint64_t> begin = JsonU64((*off_it)[0]);
  std::optional<uint64_t> end = JsonU64((*off_it)[1]);
  if (!begin || !end) return fail("data_offsets are not non-negative integers");
  if (*end < *begin) {
    return fail(internal::StrCat("data_offsets [", *begin, ", ", *end, "] end before they begin"));
  }
  if (*end > data_area.size()) {
    return fail(internal::StrCat("data_offsets [", *begin, ", ", *end, "] exceed the data area of ",
                             data_area.size(), " bytes"));
  }
  if (*end - *begin != nbytes) {
    return fail(internal::StrCat("data_offsets [", *begin, ", ", *end, "] hold ", *end - *begin,
                             " bytes but dtype ", DTypeName(*dtype), " and shape [",
                             absl::StrJoin(shape, ", "), "] need ", nbytes));
  }
  out->name = name;
  out->dtype = *dtype;
  out->shape = std::move(shape);
  out->data = data_area.subspan(*begin, nbytes);
  return absl::OkStatus();
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> parsed = Parse((*file)->bytes(), path);
  if (!parsed.ok()) return parsed.status();
  (*parsed)->file_ = std::move(*file);
  return parsed;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::span<const std::byte> bytes, std::string name) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError(internal::StrCat(
        name, ": file of ", bytes.size(), " bytes is too short for the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > bytes.size() - 8) {
    return absl::InvalidArgumentError(internal::StrCat(name, ": header length ", header_len,
                                                   " runs past the end of the file (",
                                                   bytes.size(), " bytes)"));
  }
  if (header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(internal::StrCat(name, ": header length ", header_len,
                                                   " exceeds the limit of ", kMaxHeaderBytes));
  }
  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  std::span<const std::byte> data_area = bytes.subspan(8 + header_len);

  json header;
  if (absl::Status s = ParseHeaderJson(text, name, &header); !s.ok()) return s;

  auto result = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  result->tensors_.reserve(header.size());
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) {
        return absl::InvalidArgumentError(
            internal::StrCat(name, ": \"__metadata__\" is not an object"));
      }
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          return absl::InvalidArgumentError(
              internal::StrCat(name, ": \"__metadata__\" value of \"", mkey, "\" is not a string"));
        }
        result->metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    TensorView view;
    if (absl::Status s = ParseEntry(name, key, value, data_area, &view); !s.ok()) return s;
    result->tensors_.push_back(std::move(view));
  }

  // Non-empty tensors must not share bytes.
  std::vector<const TensorView*> by_offset;
  for (const TensorView& t : result->tensors_) {
    if (!t.data.empty()) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorView* a, const TensorView* b) { return a->data.data() < b->data.data(); });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorView* prev = by_offset[i - 1];
    if (by_offset[i]->data.data() < prev->data.data() + prev->data.size()) {
      return absl::InvalidArgumentError(internal::StrCat(name, ": tensors \"", prev->name, "\" and \"",
                                                     by_offset[i]->name, "\" overlap"));
    }
  }
  for (TensorView& t : result->tensors_) result->by_name_[t.name] = &t;
  return result;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

namespace {

// Reads and parses model.safetensors.index.json: tensor name -> shard file.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(const std::string& index_path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(index_path);
  if (!file.ok()) return file.status();
  std::span<const std::byte> bytes = (*file)->bytes();
  const char* text = reinterpret_cast<const char*>(bytes.data());
  json index = json::parse(text, text + bytes.size(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(internal::StrCat(index_path, ": not a JSON object"));
  }
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return absl::InvalidArgumentError(internal::StrCat(index_path, ": missing object \"weight_map\""));
  }
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(internal::StrCat(index_path, ": weight_map entry \"", tensor,
                                                     "\" is not a file name"));
    }
    const std::string& file_name = shard.get_ref<const std::string&>();
    std::filesystem::path p(file_name);
    bool escapes = file_name.empty() || p.is_absolute();
    for (const auto& part : p) escapes |= part == "..";
    if (escapes) {
      return absl::InvalidArgumentError(internal::StrCat(index_path, ": weight_map entry \"", tensor,
                                                     "\" names shard \"", file_name,
                                                     "\" outside the checkpoint directory"));
    }
    out[tensor] = file_name;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& dir) {
  namespace fs = std::filesystem;
  auto result = std::make_unique<SafetensorsCheckpoint>();
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    absl::StatusOr<std::map<std::string, std::string>> weight_map =
        ReadWeightMap(index_path.string());
    if (!weight_map.ok()) return weight_map.status();
    std::map<std::string, const SafetensorsFile*> shards;
    for (const auto& [tensor, shard] : *weight_map) {
      auto it = shards.find(shard);
      if (it == shards.end()) {
        absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
            SafetensorsFile::Open((fs::path(dir) / shard).string());
        if (!file.ok()) return file.status();
        it = shards.emplace(shard, file->get()).first;
        result->files_.push_back(std::move(*file));
      }
      const TensorView* view = it->second->Find(tensor);
      if (view == nullptr) {
        return absl::NotFoundError(internal::StrCat(index_path.string(), ": tensor \"", tensor,
                                                "\" is not in its shard ", shard));
      }
      result->by_name_[tensor] = view;
    }
    return result;
  }
  if (fs::exists(single_path, ec)) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(single_path.string());
    if (!file.ok()) return file.status();
    for (const TensorView& t : (*file)->tensors()) result->by_name_[t.name] = &t;
    result->files_.push_back(std::move(*file));
    return result;
  }
  return absl::NotFoundError(internal::StrCat(
      dir, ": neither model.safetensors nor model.safetensors.index.json exists"));
}

const TensorView* SafetensorsCheckpoint::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) out.push_back(name);
  return out;
}

}  // namespace linearize::io
