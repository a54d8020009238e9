// Text <-> token ids. Implementations: byte-level BPE (from tokenizer.json or
// from GGUF metadata) and SentencePiece (libsentencepiece). They give the same
// ids as Hugging Face `tokenizers` for the same model. All methods are
// const and thread-safe. Invalid UTF-8 given to Encode is first repaired
// (each invalid sequence becomes U+FFFD), as Python's errors="replace" does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace linearize::io { class GgufFile; }

namespace linearize::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes `text`. Special/added tokens written literally in the text (e.g.
  // "<|im_start|>") become their ids, as in Hugging Face. With
  // `add_special_tokens`, the BOS/EOS the model's post-processor adds are added.
  virtual std::vector<int32_t> Encode(std::string_view text,
                                      bool add_special_tokens = false) const = 0;
  // Decodes ids to UTF-8 (bytes of an incomplete character are kept as they
  // are; use StreamDecoder for streaming). Special tokens are included unless
  // `skip_special_tokens`.
  virtual std::string Decode(std::span<const int32_t> ids,
                             bool skip_special_tokens = false) const = 0;
  // The raw bytes a single token stands for (special tokens: their text).
  virtual std::string TokenBytes(int32_t id) const = 0;

  virtual int64_t vocab_size() const = 0;
  // Id of a token given by its vocabulary string, e.g. "<|im_end|>".
  virtual std::optional<int32_t> TokenId(std::string_view token) const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
};

// Loads tokenizer.json (Hugging Face `tokenizers` format; model type BPE with
// the ByteLevel decoder). Errors name the file and the field. bos/eos come
// from tokenizer_config.json in the same folder when it exists, else from
// the post-processor, else from the usual token names.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path);
absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json_text,
                                                              std::string_view filename);
// Builds the tokenizer stored in GGUF metadata (tokenizer.ggml.*): "gpt2"
// (byte-level BPE; the pre-tokenizer chosen by tokenizer.ggml.pre) or "llama"
// (SentencePiece-style BPE with scores). An unknown tokenizer.ggml.pre is
// UNIMPLEMENTED, naming the known ones.
absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromGguf(const io::GgufFile& gguf);
// Loads a SentencePiece model file (tokenizer.model). Control pieces ("<s>")
// written in the text become their ids (Hugging Face's legacy Llama rule).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePiece(const std::string& path);

// Turns a stream of ids into text pieces that are always whole UTF-8
// characters: bytes of a character split across tokens are held back until
// it is complete. One per stream; not thread-safe.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}
  // Returns the text that became complete with `id` (possibly empty).
  // Bytes that can never become a character are replaced by U+FFFD at once.
  std::string Push(int32_t id);
  // Returns whatever is held back (invalid bytes become U+FFFD).
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace linearize::tokenizer
