// UTF-8 helpers shared by the tokenizers: decoding one code point, encoding,
// validation and the repair of invalid input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace linearize::tokenizer {

// Decodes the code point at `s[pos]`. Returns its length in bytes (1-4) and
// sets `cp`; returns 0 when the bytes there are not a valid, complete UTF-8
// sequence (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp);

// Appends the UTF-8 encoding of `cp` (which must be a valid scalar value).
void AppendUtf8(char32_t cp, std::string* out);

bool IsValidUtf8(std::string_view s);

// Returns `s` with each maximal invalid subsequence replaced by U+FFFD (the
// substitution Python's errors="replace" and Rust's from_utf8_lossy make).
std::string RepairUtf8(std::string_view s);

// Length of the longest prefix of `s` that does not end inside a UTF-8
// sequence that could still be completed by more bytes. Invalid bytes count
// as complete (they can never become valid).
size_t CompleteUtf8Prefix(std::string_view s);

// Unicode White_Space (Rust's char::is_whitespace).
bool IsUnicodeWhitespace(char32_t cp);

}  // namespace linearize::tokenizer
