// Block layout of each ggml tensor type. Internal to linearize_io.
#pragma once

#include <cstdint>
#include <optional>

#include "common/io/gguf.h"

namespace linearize::io::internal {

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  int64_t block_size;  // elements per block
  int64_t type_size;   // bytes per block
};

// nullopt for values that are no GgmlType this library knows.
std::optional<GgmlTypeTraits> FindGgmlTypeTraits(uint32_t type);

}  // namespace linearize::io::internal
