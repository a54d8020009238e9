#include "common/convert/tensor_file.h"

#include <ATen/ATen.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"

namespace linearize::convert {
namespace {

absl::StatusOr<io::DType> ToDType(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return io::DType::kF64;
    case at::kFloat: return io::DType::kF32;
    case at::kHalf: return io::DType::kF16;
    case at::kBFloat16: return io::DType::kBF16;
    case at::kLong: return io::DType::kI64;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot store dtype ", c10::toString(t)));
  }
}

absl::StatusOr<at::ScalarType> ToScalar(io::DType t) {
  switch (t) {
    case io::DType::kF64: return at::kDouble;
    case io::DType::kF32: return at::kFloat;
    case io::DType::kF16: return at::kHalf;
    case io::DType::kBF16: return at::kBFloat16;
    case io::DType::kI64: return at::kLong;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported dtype ", std::string(io::DTypeName(t))));
  }
}

}  // namespace

absl::Status WriteTensorFile(const std::string& path, const NamedTensorList& tensors,
                             const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> keep;
  std::vector<io::TensorToWrite> out;
  for (const auto& [name, t] : tensors) {
    absl::StatusOr<io::DType> dtype = ToDType(t.scalar_type());
    if (!dtype.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", dtype.status().message()));
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    keep.push_back(c);
    out.push_back({name, *dtype, std::vector<int64_t>(c.sizes().begin(), c.sizes().end()),
                   std::span<const std::byte>(static_cast<const std::byte*>(c.data_ptr()),
                                              static_cast<size_t>(c.nbytes()))});
  }
  return io::WriteSafetensors(path, out, metadata);
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadTensorFile(
    const std::string& path, std::map<std::string, std::string>* metadata) {
  absl::StatusOr<std::unique_ptr<io::SafetensorsFile>> file = io::SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  if (metadata != nullptr) *metadata = (*file)->metadata();
  std::map<std::string, at::Tensor> out;
  for (const io::TensorView& v : (*file)->tensors()) {
    absl::StatusOr<at::ScalarType> type = ToScalar(v.dtype);
    if (!type.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", v.name, ": ", type.status().message()));
    }
    at::Tensor t = at::empty(v.shape, at::TensorOptions().dtype(*type));
    if (static_cast<size_t>(t.nbytes()) != v.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", v.name, ": bad size"));
    }
    if (!v.data.empty()) std::memcpy(t.data_ptr(), v.data.data(), v.data.size());
    out.emplace(v.name, std::move(t));
  }
  return out;
}

}  // namespace linearize::convert
