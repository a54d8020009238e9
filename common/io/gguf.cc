#include "common/io/gguf.h"

#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <set>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "common/io/ggml_type_traits.h"
#include "common/io/str_util.h"

namespace linearize::io {
namespace internal {

std::optional<GgmlTypeTraits> FindGgmlTypeTraits(uint32_t type) {
  static constexpr std::array<GgmlTypeTraits, 20> kTraits = {{
      {GgmlType::kF32, "F32", 1, 4},       {GgmlType::kF16, "F16", 1, 2},
      {GgmlType::kQ4_0, "Q4_0", 32, 18},   {GgmlType::kQ4_1, "Q4_1", 32, 20},
      {GgmlType::kQ5_0, "Q5_0", 32, 22},   {GgmlType::kQ5_1, "Q5_1", 32, 24},
      {GgmlType::kQ8_0, "Q8_0", 32, 34},   {GgmlType::kQ8_1, "Q8_1", 32, 36},
      {GgmlType::kQ2_K, "Q2_K", 256, 84},  {GgmlType::kQ3_K, "Q3_K", 256, 110},
      {GgmlType::kQ4_K, "Q4_K", 256, 144}, {GgmlType::kQ5_K, "Q5_K", 256, 176},
      {GgmlType::kQ6_K, "Q6_K", 256, 210}, {GgmlType::kQ8_K, "Q8_K", 256, 292},
      {GgmlType::kI8, "I8", 1, 1},         {GgmlType::kI16, "I16", 1, 2},
      {GgmlType::kI32, "I32", 1, 4},       {GgmlType::kI64, "I64", 1, 8},
      {GgmlType::kF64, "F64", 1, 8},       {GgmlType::kBF16, "BF16", 1, 2},
  }};
  for (const GgmlTypeTraits& t : kTraits) {
    if (static_cast<uint32_t>(t.type) == type) return t;
  }
  return std::nullopt;
}

}  // namespace internal

namespace {

using internal::FindGgmlTypeTraits;

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
// Caps that make a corrupt file fail fast rather than allocate without bound.
// Every count is also checked against the bytes left in the file.
constexpr uint64_t kMaxTensors = 1 << 20;
constexpr uint64_t kMaxKeys = 1 << 20;
constexpr uint64_t kMaxKeyLength = 1 << 16;
constexpr uint64_t kMaxArrayLength = 1 << 26;
constexpr uint64_t kMaxTotalValues = 1 << 27;
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = 1 << 30;

enum ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Smallest encoding of one value of `type`, to bound array counts.
uint64_t MinValueBytes(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: case kString: return 8;
    case kArray: return 12;
    default: return 0;  // invalid
  }
}

// Describes what is being read, for errors: a string, or a callable that
// builds one (so the hot paths do not format messages that are never shown).
template <typename What>
std::string Describe(const What& what) {
  if constexpr (std::is_invocable_v<What>) {
    return what();
  } else {
    return std::string(what);
  }
}

// Sequential little-endian reader over the file; every read is bounds-checked.
class Reader {
 public:
  Reader(std::span<const std::byte> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  template <typename T, typename What>
  absl::Status Read(T* out, const What& what) {
    if (remaining() < sizeof(T)) return Truncated(Describe(what));
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    *out = v;  // the format and the host are little-endian
    return absl::OkStatus();
  }

  template <typename What>
  absl::Status ReadString(std::string* out, const What& what, uint64_t max_len) {
    uint64_t len = 0;
    if (absl::Status s = Read(&len, what); !s.ok()) return s;
    if (len > max_len) {
      return Error(internal::StrCat(Describe(what), ": string length ", len,
                                " exceeds the limit of ", max_len));
    }
    if (len > remaining()) {
      return Error(internal::StrCat(Describe(what), ": string length ", len,
                                " runs past the end of the file"));
    }
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(internal::StrCat(name_, ": ", what, " (at byte ", pos_, ")"));
  }
  absl::Status Truncated(std::string_view what) const {
    return Error(internal::StrCat("file truncated while reading ", what));
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& name_;
  size_t pos_ = 0;
};

auto ValueOf(const std::string& key) {
  return [&key] { return internal::StrCat("the value of key \"", key, "\""); };
}

class MetadataParser {
 public:
  explicit MetadataParser(Reader* r) : r_(r) {}

  absl::Status ReadValue(uint32_t type, const std::string& key, int depth, GgufValue* out) {
    if (++total_values_ > kMaxTotalValues) {
      return r_->Error(internal::StrCat("key \"", key, "\": more than ", kMaxTotalValues,
                                    " metadata values in total"));
    }
    switch (type) {
      case kU8: return ReadNumber<uint8_t, uint64_t>(key, out);
      case kI8: return ReadNumber<int8_t, int64_t>(key, out);
      case kU16: return ReadNumber<uint16_t, uint64_t>(key, out);
      case kI16: return ReadNumber<int16_t, int64_t>(key, out);
      case kU32: return ReadNumber<uint32_t, uint64_t>(key, out);
      case kI32: return ReadNumber<int32_t, int64_t>(key, out);
      case kU64: return ReadNumber<uint64_t, uint64_t>(key, out);
      case kI64: return ReadNumber<int64_t, int64_t>(key, out);
      case kF32: return ReadNumber<float, double>(key, out);
      case kF64: return ReadNumber<double, double>(key, out);
      case kBool: {
        uint8_t b = 0;
        if (absl::Status s = r_->Read(&b, ValueOf(key)); !s.ok()) {
          return s;
        }
        if (b > 1) return r_->Error(internal::StrCat("key \"", key, "\": bool value ", b, " is not 0 or 1"));
        out->v = b == 1;
        return absl::OkStatus();
      }
      case kString: {
        std::string str;
        if (absl::Status s = r_->ReadString(&str, ValueOf(key),
                                            std::numeric_limits<uint64_t>::max());
            !s.ok()) {
          return s;
        }
        out->v = std::move(str);
        return absl::OkStatus();
      }
      case kArray: return ReadArray(key, depth, out);
      default:
        return r_->Error(internal::StrCat("key \"", key, "\": unknown value type ", type));
    }
  }

 private:
  template <typename Stored, typename Held>
  absl::Status ReadNumber(const std::string& key, GgufValue* out) {
    Stored v{};
    if (absl::Status s = r_->Read(&v, ValueOf(key)); !s.ok()) {
      return s;
    }
    out->v = static_cast<Held>(v);
    return absl::OkStatus();
  }

  absl::Status ReadArray(const std::string& key, int depth, GgufValue* out) {
    if (depth >= kMaxArrayDepth) {
      return r_->Error(internal::StrCat("key \"", key, "\": arrays nested deeper than ", kMaxArrayDepth));
    }
    uint32_t elem_type = 0;
    uint64_t count = 0;
    if (absl::Status s = r_->Read(&elem_type, internal::StrCat("array type of key \"", key, "\""));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = r_->Read(&count, internal::StrCat("array length of key \"", key, "\""));
        !s.ok()) {
      return s;
    }
    const uint64_t min_bytes = MinValueBytes(elem_type);
    if (min_bytes == 0) {
      return r_->Error(internal::StrCat("key \"", key, "\": unknown array element type ", elem_type));
    }
    if (count > kMaxArrayLength) {
      return r_->Error(internal::StrCat("key \"", key, "\": array length ", count,
                                    " exceeds the limit of ", kMaxArrayLength));
    }
    if (count > r_->remaining() / min_bytes) {
      return r_->Error(internal::StrCat("key \"", key, "\": array length ", count,
                                    " runs past the end of the file"));
    }
    GgufArray array;
    array.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      GgufValue elem;
      if (absl::Status s = ReadValue(elem_type, key, depth + 1, &elem); !s.ok()) return s;
      array.push_back(std::move(elem));
    }
    out->v = std::move(array);
    return absl::OkStatus();
  }

  Reader* r_;
  uint64_t total_values_ = 0;
};

std::string_view KindName(const GgufValue& v) {
  static constexpr std::string_view kNames[] = {"an unsigned integer", "an integer", "a float",
                                                "a bool", "a string", "an array"};
  return kNames[v.v.index()];
}

std::optional<int64_t> AsInt(const GgufValue& v) {
  if (const uint64_t* u = std::get_if<uint64_t>(&v.v)) {
    if (*u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return static_cast<int64_t>(*u);
    }
    return std::nullopt;
  }
  if (const int64_t* i = std::get_if<int64_t>(&v.v)) return *i;
  return std::nullopt;
}

std::optional<double> AsFloat(const GgufValue& v) {
  if (const double* d = std::get_if<double>(&v.v)) return *d;
  if (const uint64_t* u = std::get_if<uint64_t>(&v.v)) return static_cast<double>(*u);
  if (const int64_t* i = std::get_if<int64_t>(&v.v)) return static_cast<double>(*i);
  return std::nullopt;
}

}  // namespace

std::string_view GgmlTypeName(GgmlType type) {
  std::optional<internal::GgmlTypeTraits> t = FindGgmlTypeTraits(static_cast<uint32_t>(type));
  return t ? t->name : "unknown";
}

bool IsSupportedGgmlType(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kQ8_0:
    case GgmlType::kQ4_0: case GgmlType::kQ4_1: case GgmlType::kQ4_K: case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> parsed = Parse((*file)->bytes(), path);
  if (!parsed.ok()) return parsed.status();
  (*parsed)->file_ = std::move(*file);
  return parsed;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const std::byte> bytes,
                                                         std::string name) {
  auto result = std::unique_ptr<GgufFile>(new GgufFile());
  result->name_ = std::move(name);
  Reader r(bytes, result->name_);

  uint32_t magic = 0, version = 0;
  uint64_t tensor_count = 0, kv_count = 0;
  if (absl::Status s = r.Read(&magic, "the magic"); !s.ok()) return s;
  if (magic != kMagic) return r.Error("bad magic: not a GGUF file");
  if (absl::Status s = r.Read(&version, "the version"); !s.ok()) return s;
  if (version != 2 && version != 3) {
    return r.Error(internal::StrCat("unsupported GGUF version ", version,
                                " (2 and 3 are read; big-endian files are not)"));
  }
  if (absl::Status s = r.Read(&tensor_count, "the tensor count"); !s.ok()) return s;
  if (absl::Status s = r.Read(&kv_count, "the metadata count"); !s.ok()) return s;
  // A key/value takes at least 13 bytes, a tensor info at least 24.
  if (kv_count > kMaxKeys || kv_count > r.remaining() / 13) {
    return r.Error(internal::StrCat("metadata count ", kv_count, " is impossibly large"));
  }
  if (tensor_count > kMaxTensors || tensor_count > r.remaining() / 24) {
    return r.Error(internal::StrCat("tensor count ", tensor_count, " is impossibly large"));
  }

  MetadataParser meta(&r);
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key;
    if (absl::Status s = r.ReadString(&key, internal::StrCat("metadata key #", i), kMaxKeyLength);
        !s.ok()) {
      return s;
    }
    uint32_t type = 0;
    if (absl::Status s = r.Read(&type, internal::StrCat("the type of key \"", key, "\"")); !s.ok()) {
      return s;
    }
    GgufValue value;
    if (absl::Status s = meta.ReadValue(type, key, 0, &value); !s.ok()) return s;
    if (!result->metadata_.emplace(key, std::move(value)).second) {
      return r.Error(internal::StrCat("metadata key \"", key, "\" appears twice"));
    }
  }

  uint64_t alignment = 32;
  if (const GgufValue* a = result->Find("general.alignment")) {
    std::optional<int64_t> v = AsInt(*a);
    if (!v || *v <= 0 || static_cast<uint64_t>(*v) > kMaxAlignment || !std::has_single_bit(static_cast<uint64_t>(*v))) {
      return absl::InvalidArgumentError(internal::StrCat(
          result->name_, ": general.alignment must be a power of two up to ", kMaxAlignment));
    }
    alignment = static_cast<uint64_t>(*v);
  }

  struct Pending {
    uint64_t offset;
    uint64_t nbytes;
  };
  std::vector<Pending> pending;
  pending.reserve(tensor_count);
  result->tensors_.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor t;
    if (absl::Status s = r.ReadString(&t.name, internal::StrCat("the name of tensor #", i), kMaxKeyLength);
        !s.ok()) {
      return s;
    }
    auto fail = [&](std::string_view what) {
      return r.Error(internal::StrCat("tensor \"", t.name, "\": ", what));
    };
    uint32_t n_dims = 0;
    if (absl::Status s = r.Read(&n_dims, internal::StrCat("the rank of tensor \"", t.name, "\""));
        !s.ok()) {
      return s;
    }
    if (n_dims > kMaxDims) return fail(internal::StrCat(n_dims, " dimensions (at most ", kMaxDims, ")"));
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      if (absl::Status s = r.Read(&dim, internal::StrCat("the shape of tensor \"", t.name, "\""));
          !s.ok()) {
        return s;
      }
      // Each dimension must fit int64 on its own too: after a zero dimension
      // the product stays 0 whatever follows.
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return fail(internal::StrCat("dimension ", d, " is ", dim, " (more than 2^63 - 1)"));
      }
      if (__builtin_mul_overflow(numel, dim, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return fail("element count overflows 64 bits");
      }
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    uint32_t type = 0;
    uint64_t offset = 0;
    if (absl::Status s = r.Read(&type, internal::StrCat("the type of tensor \"", t.name, "\"")); !s.ok()) {
      return s;
    }
    if (absl::Status s = r.Read(&offset, internal::StrCat("the offset of tensor \"", t.name, "\""));
        !s.ok()) {
      return s;
    }
    std::optional<internal::GgmlTypeTraits> traits = FindGgmlTypeTraits(type);
    if (!traits) return fail(internal::StrCat("unknown ggml type ", type));
    t.type = traits->type;
    const uint64_t row = t.dims.empty() ? 1 : static_cast<uint64_t>(t.dims[0]);
    if (row % traits->block_size != 0) {
      return fail(internal::StrCat("row length ", row, " is not a multiple of the ", traits->name,
                               " block size ", traits->block_size));
    }
    if (offset % alignment != 0) {
      return fail(internal::StrCat("data offset ", offset, " is not a multiple of the alignment ",
                               alignment));
    }
    // numel < 2^63 and type_size/block_size <= 9, so this cannot overflow.
    const uint64_t nbytes = numel / traits->block_size * traits->type_size;
    if (!result->tensor_index_.emplace(t.name, result->tensors_.size()).second) {
      return fail("name appears twice");
    }
    result->tensors_.push_back(std::move(t));
    pending.push_back({offset, nbytes});
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  for (size_t i = 0; i < pending.size(); ++i) {
    GgufTensor& t = result->tensors_[i];
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(data_start, pending[i].offset, &begin) ||
        __builtin_add_overflow(begin, pending[i].nbytes, &end) || end > bytes.size()) {
      return absl::InvalidArgumentError(internal::StrCat(
          result->name_, ": tensor \"", t.name, "\": data [", pending[i].offset, ", +",
          pending[i].nbytes, ") after the data section start ", data_start,
          " runs past the end of the file (", bytes.size(), " bytes)"));
    }
    t.data = bytes.subspan(begin, pending[i].nbytes);
  }
  return result;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

absl::Status NotFound(const std::string& file, std::string_view key) {
  return absl::NotFoundError(internal::StrCat(file, ": metadata key \"", key, "\" not found"));
}

absl::Status WrongType(const std::string& file, std::string_view key, const GgufValue& v,
                       std::string_view expected) {
  return absl::InvalidArgumentError(internal::StrCat(file, ": metadata key \"", key, "\" is ",
                                                 KindName(v), ", expected ", expected));
}

// Converts every element of the array at `key` with `convert`.
template <typename T, typename Convert>
absl::StatusOr<std::vector<T>> GetArray(const GgufFile& f, std::string_view key,
                                        std::string_view expected, Convert convert) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return NotFound(f.name(), key);
  const GgufArray* array = std::get_if<GgufArray>(&v->v);
  if (array == nullptr) return WrongType(f.name(), key, *v, internal::StrCat("an array of ", expected));
  std::vector<T> out;
  out.reserve(array->size());
  for (size_t i = 0; i < array->size(); ++i) {
    std::optional<T> e = convert((*array)[i]);
    if (!e) {
      return absl::InvalidArgumentError(internal::StrCat(f.name(), ": metadata key \"", key,
                                                     "\" element ", i, " is ",
                                                     KindName((*array)[i]), ", expected ", expected));
    }
    out.push_back(std::move(*e));
  }
  return out;
}

std::optional<std::string> AsString(const GgufValue& v) {
  if (const std::string* s = std::get_if<std::string>(&v.v)) return *s;
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, key);
  std::optional<std::string> s = AsString(*v);
  if (!s) return WrongType(name_, key, *v, "a string");
  return *s;
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, key);
  std::optional<int64_t> i = AsInt(*v);
  if (!i) return WrongType(name_, key, *v, "an integer that fits int64");
  return *i;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, key);
  std::optional<double> d = AsFloat(*v);
  if (!d) return WrongType(name_, key, *v, "a number");
  return *d;
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, key);
  const bool* b = std::get_if<bool>(&v->v);
  if (b == nullptr) return WrongType(name_, key, *v, "a bool");
  return *b;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  return GetArray<std::string>(*this, key, "strings", AsString);
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  return GetArray<int64_t>(*this, key, "integers", AsInt);
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  return GetArray<double>(*this, key, "numbers", AsFloat);
}

}  // namespace linearize::io
