// Normalizers applied to text before pre-tokenization (after special tokens
// are split out). The supported models use none, or NFC (Qwen2).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace linearize::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string Normalize(std::string_view text) const = 0;
};

std::unique_ptr<Normalizer> MakeNfcNormalizer();
std::unique_ptr<Normalizer> MakeSequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps);

}  // namespace linearize::tokenizer
