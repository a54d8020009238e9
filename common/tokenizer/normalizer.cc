#include "common/tokenizer/normalizer.h"

#include <utility>

#include "common/tokenizer/unicode_nfc.h"

namespace linearize::tokenizer {
namespace {

class NfcNormalizer : public Normalizer {
 public:
  std::string Normalize(std::string_view text) const override { return NormalizeNfc(text); }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  std::string Normalize(std::string_view text) const override {
    std::string out(text);
    for (const auto& step : steps_) out = step->Normalize(out);
    return out;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> MakeNfcNormalizer() { return std::make_unique<NfcNormalizer>(); }

std::unique_ptr<Normalizer> MakeSequenceNormalizer(
    std::vector<std::unique_ptr<Normalizer>> steps) {
  return std::make_unique<SequenceNormalizer>(std::move(steps));
}

}  // namespace linearize::tokenizer
