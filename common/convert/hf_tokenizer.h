// The Hugging Face tokenizer files of a GGUF model, built from the
// tokenizer.ggml.* metadata so that they encode exactly as
// tokenizer::TokenizerFromGguf does: tokenizer.json (the `tokenizers`
// library's format) for byte-level BPE, tokenizer.model (a SentencePiece
// model) for SentencePiece-style ones, plus tokenizer_config.json (special
// tokens, chat template) and special_tokens_map.json.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/io/gguf.h"

namespace linearize::convert {

struct HfTokenizerFiles {
  std::string tokenizer_json;  // "gpt2" models; "" otherwise
  std::string
      tokenizer_model;  // "llama" models (serialized SentencePiece ModelProto); "" otherwise
  std::string tokenizer_config_json;
  std::string special_tokens_map_json;
};

// "gpt2" (byte-level BPE) with the pre-tokenizers TokenizerFromGguf knows
// (gpt-2/default, smollm/starcoder, llama3/llama-bpe, qwen2): tokenizer.json
// with the vocabulary, merges, control (special) and user-defined tokens as
// added tokens, the pre-tokenizer tokenizer.ggml.pre names, BOS/EOS added as
// tokenizer.ggml.add_bos_token/add_eos_token say. "llama": tokenizer.model,
// a SentencePiece BPE model with the pieces, scores and types, byte fallback
// when there are byte pieces and the dummy prefix of
// tokenizer.ggml.add_space_prefix. `model_max_length` goes into
// tokenizer_config.json. UNIMPLEMENTED for other tokenizer models and
// unknown pre-tokenizers; INVALID_ARGUMENT for malformed metadata (a token
// listed twice, a bad merge, a bad type), naming the key.
absl::StatusOr<HfTokenizerFiles> HfTokenizerFromGguf(const io::GgufFile& gguf,
                                                     int64_t model_max_length);

}  // namespace linearize::convert
