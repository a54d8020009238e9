// SentencePiece-style BPE driven by piece scores, as stored in GGUF files of
// tokenizer model "llama" (Llama 2, Mistral). Encodes like libsentencepiece
// does for a BPE model with identity normalization: spaces become "▁", a
// "▁" is prefixed to each text run, adjacent pieces merge best-score first,
// unknown characters fall back to <0xXX> byte pieces.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::tokenizer {

// Piece types (GGUF tokenizer.ggml.token_type, SentencePiece's ModelProto).
enum class PieceType : int32_t {
  kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

struct SpmVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<PieceType> types;
  bool add_space_prefix = true;
  bool add_bos = true;
  bool add_eos = false;
  std::optional<int32_t> bos_id, eos_id, unk_id;
};

// Control and unknown pieces written in the text become their ids, and the
// text after one gets its own "▁" prefix (Hugging Face's legacy Llama
// behaviour, which llama.cpp shares). Errors name `source`.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(SpmVocab vocab, std::string source);

}  // namespace linearize::tokenizer
