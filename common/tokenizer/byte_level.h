// GPT-2's reversible byte <-> Unicode mapping used by byte-level BPE: every
// byte becomes a printable character ("Ġ" for space, "Ċ" for newline) so
// tokens are ordinary strings.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace linearize::tokenizer {

// The character (as UTF-8) that stands for `byte`.
std::string_view ByteToUnicode(unsigned char byte);
// Maps every byte of `text` to its character.
std::string BytesToUnicode(std::string_view text);
// The byte a character stands for, if it is one of the 256 characters.
std::optional<unsigned char> UnicodeToByte(char32_t cp);
// ByteLevel decoding of one token string: its characters mapped back to
// bytes; a token with any character outside the map is returned as its own
// UTF-8 bytes (as Hugging Face's ByteLevel decoder does).
std::string ByteLevelDecodeToken(std::string_view token);

}  // namespace linearize::tokenizer
