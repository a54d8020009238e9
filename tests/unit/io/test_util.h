// Helpers shared by the linearize_io tests: a temporary directory, file
// writing, and a byte-level GGUF builder for crafting (bad) files.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace linearize::io::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "linearize_io_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

template <typename T>
std::span<const std::byte> AsBytes(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

// Appends little-endian GGUF pieces to a byte string.
class GgufBuilder {
 public:
  // GGUF value types.
  enum Type : uint32_t {
    kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
    kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
  };

  // Magic, version and the two counts.
  GgufBuilder& Header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
    Raw("GGUF");
    return U32(version).U64(tensors).U64(kvs);
  }
  GgufBuilder& Raw(std::string_view s) {
    bytes_.append(s);
    return *this;
  }
  template <typename T>
  GgufBuilder& Pod(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    bytes_.append(buf, sizeof(T));
    return *this;
  }
  GgufBuilder& U8(uint8_t v) { return Pod(v); }
  GgufBuilder& U32(uint32_t v) { return Pod(v); }
  GgufBuilder& U64(uint64_t v) { return Pod(v); }
  GgufBuilder& F32(float v) { return Pod(v); }
  GgufBuilder& Str(std::string_view s) { return U64(s.size()).Raw(s); }

  // Key/value helpers.
  GgufBuilder& KvU32(std::string_view key, uint32_t v) { return Str(key).U32(kU32).U32(v); }
  GgufBuilder& KvF32(std::string_view key, float v) { return Str(key).U32(kF32).F32(v); }
  GgufBuilder& KvStr(std::string_view key, std::string_view v) {
    return Str(key).U32(kString).Str(v);
  }
  GgufBuilder& KvStrArray(std::string_view key, const std::vector<std::string>& v) {
    Str(key).U32(kArray).U32(kString).U64(v.size());
    for (const std::string& s : v) Str(s);
    return *this;
  }

  // A tensor info: name, dims (ggml order), type, offset.
  GgufBuilder& TensorInfo(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type,
                          uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }
  // Zero bytes up to the next multiple of `alignment`.
  GgufBuilder& Align(size_t alignment = 32) {
    bytes_.append((alignment - bytes_.size() % alignment) % alignment, '\0');
    return *this;
  }
  GgufBuilder& Zeros(size_t n) {
    bytes_.append(n, '\0');
    return *this;
  }

  const std::string& bytes() const { return bytes_; }
  std::span<const std::byte> span() const { return AsBytes(bytes_); }

 private:
  std::string bytes_;
};

}  // namespace linearize::io::testing
