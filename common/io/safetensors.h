// Safetensors checkpoints: one file, or shards listed by
// model.safetensors.index.json. Reading maps the files and hands out views
// into them (no copies); writing produces files that the Python
// `safetensors` package reads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/dtype.h"
#include "common/io/mapped_file.h"

namespace linearize::io {

// A tensor stored in a file: a view that lives as long as its file object.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // exactly numel * DTypeSize(dtype) bytes
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`: header length, JSON, dtypes, shapes, offsets
  // inside the file, no overlaps. Errors name the file and the tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Validates bytes that the caller keeps alive (tests, fuzzing). `name` is
  // used in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(
      std::span<const std::byte> bytes, std::string name);

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(std::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, TensorView*, std::less<>> by_name_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a Hugging Face checkpoint directory: model.safetensors, or
// the shards named by model.safetensors.index.json (each opened once).
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& dir);
  const TensorView* Find(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> by_name_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

// Writes a safetensors file (atomically: a temporary file renamed into place,
// so an existing file is never left half-written).
absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace linearize::io
