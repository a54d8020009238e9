// LoadSentencePiece: a Tokenizer over libsentencepiece.
#include <utility>

#include "absl/status/status.h"
#include "common/tokenizer/added_vocabulary.h"
#include "common/tokenizer/sp_processor.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"

// Control and unknown pieces ("<s>", "</s>", "<unk>") written in the text
// become their ids and each text run between them is encoded on its own, so
// it gets its own "▁" prefix: Hugging Face's legacy Llama behaviour, which
// llama.cpp shares. libsentencepiece itself would spell them out.
class SentencePieceTokenizer : public Tokenizer {
 public:
  absl::Status Init(const std::string& path) {
    if (std::string error = sp_.Load(path); !error.empty()) {
      return absl::InvalidArgumentError(internal::StrCat(path, ": ", error));
    }
    std::vector<AddedToken> specials;
    for (int id = 0; id < sp_.PieceSize(); ++id) {
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) {
        specials.push_back(AddedToken{sp_.IdToPiece(id), id, /*special=*/true});
      }
    }
    specials_ = AddedVocabulary(std::move(specials));
    std::vector<std::string> pieces;
    if (!sp_.EncodePieces("x", &pieces)) {
      return absl::InternalError(internal::StrCat(path, ": cannot encode a probe string"));
    }
    add_dummy_prefix_ = !pieces.empty() && pieces[0].rfind(kSpace, 0) == 0;
    return absl::OkStatus();
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    std::string repaired;
    if (!IsValidUtf8(text)) {
      repaired = RepairUtf8(text);
      text = repaired;
    }
    std::vector<int32_t> ids;
    if (add_special_tokens && sp_.bos_id() >= 0) ids.push_back(sp_.bos_id());
    std::vector<int> run;
    for (const TextSegment& seg : specials_.Split(text, false)) {
      if (seg.token_id >= 0) {
        ids.push_back(seg.token_id);
        continue;
      }
      run.clear();
      // Encode only fails on an unloaded model; the run then adds nothing.
      if (sp_.Encode(text.substr(seg.begin, seg.end - seg.begin), &run)) {
        ids.insert(ids.end(), run.begin(), run.end());
      }
    }
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    for (int32_t id : ids) {
      if (!Valid(id) || (skip_special_tokens && IsSpecial(id))) continue;
      out.append(TokenBytes(id));
    }
    if (add_dummy_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  std::string TokenBytes(int32_t id) const override {
    if (!Valid(id)) return std::string();
    const std::string piece = sp_.IdToPiece(id);
    if (sp_.IsByte(id) && piece.size() == 6) {
      int value = 0;
      for (char c : piece.substr(3, 2)) {
        value = value * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
      }
      return std::string(1, static_cast<char>(value & 0xFF));
    }
    if (IsSpecial(id)) return piece;
    return internal::ReplaceAll(piece, kSpace, " ");
  }

  int64_t vocab_size() const override { return sp_.PieceSize(); }
  std::optional<int32_t> TokenId(std::string_view token) const override {
    const int id = sp_.PieceToId(token);
    // PieceToId answers unk_id for unknown strings.
    if (id < 0 || (sp_.IsUnknown(id) && sp_.IdToPiece(id) != token)) return std::nullopt;
    return id;
  }
  bool IsSpecial(int32_t id) const override {
    return Valid(id) && (sp_.IsControl(id) || sp_.IsUnknown(id));
  }
  std::optional<int32_t> bos_id() const override {
    return sp_.bos_id() >= 0 ? std::optional<int32_t>(sp_.bos_id()) : std::nullopt;
  }
  std::optional<int32_t> eos_id() const override {
    return sp_.eos_id() >= 0 ? std::optional<int32_t>(sp_.eos_id()) : std::nullopt;
  }

 private:
  bool Valid(int32_t id) const { return id >= 0 && id < sp_.PieceSize(); }

  SpProcessor sp_;
  AddedVocabulary specials_;
  bool add_dummy_prefix_ = true;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePiece(const std::string& path) {
  auto tokenizer = std::make_unique<SentencePieceTokenizer>();
  if (absl::Status s = tokenizer->Init(path); !s.ok()) return s;
  return tokenizer;
}

}  // namespace linearize::tokenizer
