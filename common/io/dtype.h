// Element types of stored tensors, shared by safetensors and the loaders.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"

namespace linearize::io {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
size_t DTypeSize(DType dtype);
// The safetensors spelling ("F32", "BF16", ...).
std::string_view DTypeName(DType dtype);
// Parses the safetensors spelling; INVALID_ARGUMENT names the unknown string.
absl::StatusOr<DType> ParseDType(std::string_view name);

}  // namespace linearize::io
