// Fuzzes SafetensorsFile::Parse: any input must parse or fail cleanly, and
// every tensor it accepts must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "common/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto file = linearize::io::SafetensorsFile::Parse(bytes, "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const linearize::io::TensorView& t : (*file)->tensors()) {
    if (t.data.data() < bytes.data() || t.data.data() + t.data.size() > bytes.data() + size) {
      std::abort();
    }
    if (static_cast<uint64_t>(t.numel()) * linearize::io::DTypeSize(t.dtype) != t.data.size()) {
      std::abort();
    }
    if ((*file)->Find(t.name) != &t) std::abort();
    volatile uint8_t sink = 0;
    for (std::byte b : t.data) sink = sink ^ static_cast<uint8_t>(b);
  }
  return 0;
}
