// libFuzzer target: ParseTokenizerJson on arbitrary bytes; when it parses,
// encode and decode a fixed text and one taken from the input, stream the
// ids, and query ids in and out of range. Must never crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer/tokenizer.h"

namespace {

constexpr std::string_view kFixedText =
    "Hello, world! Héllo e\xCC\x81 1234567 中文 👨‍👩‍👧‍👦 I'm  \t\n\n  "
    "<|im_start|>user\nhi<|im_end|><|begin_of_text|> <mask> word\xFF";

void Exercise(const linearize::tokenizer::Tokenizer& tok, std::string_view text) {
  for (bool special : {false, true}) {
    const std::vector<int32_t> ids = tok.Encode(text, special);
    (void)tok.Decode(ids, false);
    (void)tok.Decode(ids, true);
    linearize::tokenizer::StreamDecoder stream(tok, special);
    for (int32_t id : ids) {
      (void)stream.Push(id);
      (void)tok.IsSpecial(id);
    }
    (void)stream.Flush();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto tok = linearize::tokenizer::ParseTokenizerJson(input, "fuzz.json");
  if (!tok.ok()) return 0;
  const auto& t = **tok;
  Exercise(t, kFixedText);
  // The input's own text, bounded to keep each run short.
  Exercise(t, input.substr(0, 2048));
  const std::vector<int32_t> odd = {-1, 0, 1, static_cast<int32_t>(t.vocab_size()),
                                    static_cast<int32_t>(t.vocab_size()) - 1, INT32_MAX};
  (void)t.Decode(odd);
  for (int32_t id : odd) {
    (void)t.TokenBytes(id);
    (void)t.IsSpecial(id);
  }
  (void)t.TokenId("<|im_end|>");
  (void)t.bos_id();
  (void)t.eos_id();
  return 0;
}
