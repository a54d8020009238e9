// Unicode Normalization Form C, for tokenizers whose normalizer is NFC
// (Qwen2). Tables come from gen_nfc_tables.py (Python's unicodedata).
#pragma once

#include <string>
#include <string_view>

namespace linearize::tokenizer {

// NFC of valid UTF-8 `text`. Text with no code point at or above U+0300 is
// returned unchanged without further work.
std::string NormalizeNfc(std::string_view text);

}  // namespace linearize::tokenizer
