// Fuzzes GgufFile::Parse, the typed getters, ModelConfigFromGguf and the
// dequantization of every (small enough) tensor the parser accepts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "common/io/gguf.h"
#include "common/io/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace linearize::io;
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto file = GgufFile::Parse(bytes, "fuzz.gguf");
  if (!file.ok()) return 0;
  const GgufFile& f = **file;
  for (const auto& [key, value] : f.metadata()) {
    (void)f.GetString(key);
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetBool(key);
    (void)f.GetStringArray(key);
    (void)f.GetIntArray(key);
    (void)f.GetFloatArray(key);
  }
  (void)ModelConfigFromGguf(f);
  std::vector<float> out;
  for (const GgufTensor& t : f.tensors()) {
    if (t.data.data() < bytes.data() || t.data.data() + t.data.size() > bytes.data() + size) {
      std::abort();
    }
    if (f.FindTensor(t.name) != &t) std::abort();
    if (t.numel() > (1 << 20)) continue;
    out.assign(static_cast<size_t>(t.numel()), 0.0f);
    absl::Status s = DequantizeToF32(t, out);
    if (IsSupportedGgmlType(t.type) && !s.ok()) std::abort();  // the parser checked the sizes
  }
  return 0;
}
