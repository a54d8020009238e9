// GGUF files (llama.cpp's format): metadata key/values and tensors, some of
// them block-quantized. The file is mapped; tensors are views into it and
// are dequantized to float32 on request.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/mapped_file.h"

namespace linearize::io {

// ggml tensor types (values as in the file format).
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8,
  kQ8_1 = 9, kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14,
  kQ8_K = 15, kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28, kBF16 = 30,
};
std::string_view GgmlTypeName(GgmlType type);
// True for the types DequantizeToF32 accepts: F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q4_K, Q6_K.
bool IsSupportedGgmlType(GgmlType type);

// A metadata value. Arrays hold one element type.
struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> v;
};

struct GgufTensor {
  std::string name;
  GgmlType type;
  // ggml order: dims[0] is the fastest-varying (row length). The row-major
  // (PyTorch) shape is this reversed.
  std::vector<int64_t> dims;
  std::span<const std::byte> data;
  int64_t numel() const;
};

class GgufFile {
 public:
  // Maps and validates `path`: magic, version (2 or 3), counts, strings,
  // value types, tensor extents inside the file. Errors name the file and
  // the key or tensor at fault.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const std::byte> bytes,
                                                         std::string name);

  const std::string& name() const { return name_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;
  // Typed getters: NOT_FOUND if absent, INVALID_ARGUMENT (naming the key)
  // if of another type. Integer getters accept any integer type that fits.
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // also ints
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* FindTensor(std::string_view name) const;

 private:
  GgufFile() = default;
  std::string name_;
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Dequantizes `tensor` into `out` (numel floats). INVALID_ARGUMENT names the
// tensor and type when the type is unsupported or the sizes disagree.
absl::Status DequantizeToF32(const GgufTensor& tensor, std::span<float> out);

}  // namespace linearize::io
