// Named at::Tensors to and from a safetensors file (exact bytes, so a
// checkpoint restores bit for bit).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace linearize::convert {

using NamedTensorList = std::vector<std::pair<std::string, at::Tensor>>;

// F64/F32/F16/BF16/I64 tensors; written atomically.
absl::Status WriteTensorFile(const std::string& path, const NamedTensorList& tensors,
                             const std::map<std::string, std::string>& metadata = {});
// Every tensor of the file, copied into CPU tensors of the stored dtype;
// the file's metadata into `metadata` when given.
absl::StatusOr<std::map<std::string, at::Tensor>> ReadTensorFile(
    const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace linearize::convert
