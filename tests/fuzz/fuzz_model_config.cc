// Fuzzes ParseHfConfig: any text must parse or fail cleanly, and an accepted
// config must satisfy the invariants the model code relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/io/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = linearize::io::ParseHfConfig(text, "fuzz/config.json");
  if (!config.ok()) return 0;
  const linearize::io::ModelConfig& c = *config;
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 ||
      c.head_dim <= 0 || c.num_attention_heads % c.num_key_value_heads != 0 ||
      !(c.rms_norm_eps > 0)) {
    std::abort();
  }
  return 0;
}
