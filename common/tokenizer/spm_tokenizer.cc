#include "common/tokenizer/spm_tokenizer.h"

#include <array>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/added_vocabulary.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"

// "<0x41>" -> 0x41.
std::optional<unsigned char> ParseBytePiece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') value |= c - '0';
    else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
    else return std::nullopt;
  }
  return static_cast<unsigned char>(value);
}

class SpmTokenizer : public Tokenizer {
 public:
  SpmTokenizer(SpmVocab vocab, std::string source)
      : v_(std::move(vocab)), source_(std::move(source)) {}

  absl::Status Init() {
    const size_t n = v_.pieces.size();
    if (v_.scores.size() != n || v_.types.size() != n) {
      return absl::InvalidArgumentError(internal::StrCat(
          source_, ": ", n, " pieces but ", v_.scores.size(), " scores and ", v_.types.size(),
          " types"));
    }
    byte_ids_.fill(-1);
    std::vector<AddedToken> specials, user_defined;
    for (size_t i = 0; i < n; ++i) {
      const auto id = static_cast<int32_t>(i);
      const std::string& piece = v_.pieces[i];
      all_ids_.emplace(piece, id);
      switch (v_.types[i]) {
        case PieceType::kNormal:
        case PieceType::kUnused:
          mergeable_.emplace(piece, id);
          break;
        case PieceType::kUserDefined:
          mergeable_.emplace(piece, id);
          user_defined.push_back(AddedToken{internal::ReplaceAll(piece, kSpace, " "), id});
          break;
        case PieceType::kControl:
        case PieceType::kUnknown:
          specials.push_back(AddedToken{piece, id, /*special=*/true});
          break;
        case PieceType::kByte:
          if (auto b = ParseBytePiece(piece)) byte_ids_[*b] = id;
          break;
        default:
          return absl::InvalidArgumentError(internal::StrCat(
              source_, ": piece ", i, " has unknown type ", static_cast<int32_t>(v_.types[i])));
      }
    }
    for (auto id : {v_.bos_id, v_.eos_id, v_.unk_id}) {
      if (id && (*id < 0 || static_cast<size_t>(*id) >= n)) {
        return absl::InvalidArgumentError(
            internal::StrCat(source_, ": special token id ", *id, " is out of range"));
      }
    }
    if (v_.add_bos && !v_.bos_id) v_.add_bos = false;
    if (v_.add_eos && !v_.eos_id) v_.add_eos = false;
    specials_ = AddedVocabulary(std::move(specials));
    user_defined_ = AddedVocabulary(std::move(user_defined));
    return absl::OkStatus();
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    std::string repaired;
    if (!IsValidUtf8(text)) {
      repaired = RepairUtf8(text);
      text = repaired;
    }
    std::vector<int32_t> ids;
    if (add_special_tokens && v_.add_bos) ids.push_back(*v_.bos_id);
    bool after_special = true;
    for (const TextSegment& seg : specials_.Split(text, false)) {
      if (seg.token_id >= 0) {
        ids.push_back(seg.token_id);
        after_special = true;
        continue;
      }
      std::string_view part = text.substr(seg.begin, seg.end - seg.begin);
      // User-defined pieces are whole symbols that never merge further.
      bool first = true;
      for (const TextSegment& u : user_defined_.Split(part, false)) {
        if (u.token_id >= 0) {
          if (first && after_special && v_.add_space_prefix) EncodeRun(kSpace, &ids);
          ids.push_back(u.token_id);
        } else {
          std::string run;
          if (first && after_special && v_.add_space_prefix) run.append(kSpace);
          run.append(internal::ReplaceAll(part.substr(u.begin, u.end - u.begin), " ", kSpace));
          EncodeRun(run, &ids);
        }
        first = false;
      }
      after_special = false;
    }
    if (add_special_tokens && v_.add_eos) ids.push_back(*v_.eos_id);
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    for (int32_t id : ids) {
      if (!Valid(id) || (skip_special_tokens && IsSpecial(id))) continue;
      out.append(TokenBytes(id));
    }
    // The "▁" prefix that encoding added (Hugging Face's Strip decoder).
    if (v_.add_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  std::string TokenBytes(int32_t id) const override {
    if (!Valid(id)) return std::string();
    const std::string& piece = v_.pieces[id];
    switch (v_.types[id]) {
      case PieceType::kByte:
        if (auto b = ParseBytePiece(piece)) return std::string(1, static_cast<char>(*b));
        return piece;
      case PieceType::kControl:
      case PieceType::kUnknown:
        return piece;
      default:
        return internal::ReplaceAll(piece, kSpace, " ");
    }
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(v_.pieces.size()); }
  std::optional<int32_t> TokenId(std::string_view token) const override {
    auto it = all_ids_.find(token);
    if (it == all_ids_.end()) return std::nullopt;
    return it->second;
  }
  bool IsSpecial(int32_t id) const override {
    return Valid(id) && (v_.types[id] == PieceType::kControl || v_.types[id] == PieceType::kUnknown);
  }
  std::optional<int32_t> bos_id() const override { return v_.bos_id; }
  std::optional<int32_t> eos_id() const override { return v_.eos_id; }

 private:
  bool Valid(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < v_.pieces.size(); }

  // libsentencepiece's BPE Model::Encode on one run of escaped text.
  void EncodeRun(std::string_view text, std::vector<int32_t>* ids) const {
    struct Symbol {
      int32_t prev, next;
      size_t begin, size;  // into `text`; size 0 once merged away
    };
    std::vector<Symbol> symbols;
    size_t pos = 0;
    while (pos < text.size()) {
      char32_t cp;
      size_t n = DecodeUtf8(text, pos, &cp);
      if (n == 0) n = 1;
      const auto index = static_cast<int32_t>(symbols.size());
      symbols.push_back(Symbol{index - 1, -1, pos, n});
      if (index > 0) symbols[index - 1].next = index;
      pos += n;
    }
    struct Pair {
      float score;
      int32_t left, right;
      size_t size;
    };
    // Highest score first; among equal scores the leftmost.
    auto worse = [](const Pair& a, const Pair& b) {
      return a.score != b.score ? a.score < b.score : a.left > b.left;
    };
    std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
    // Pieces made of unused pieces are split back into what formed them.
    absl::flat_hash_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
    auto add_pair = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const std::string_view piece =
          text.substr(symbols[left].begin, symbols[left].size + symbols[right].size);
      auto it = mergeable_.find(piece);
      if (it == mergeable_.end()) return;
      agenda.push(Pair{v_.scores[it->second], left, right, piece.size()});
      if (v_.types[it->second] == PieceType::kUnused) {
        rev_merge[piece] = {text.substr(symbols[left].begin, symbols[left].size),
                            text.substr(symbols[right].begin, symbols[right].size)};
      }
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) add_pair(i, i + 1);
    while (!agenda.empty()) {
      const Pair top = agenda.top();
      agenda.pop();
      Symbol& left = symbols[top.left];
      Symbol& right = symbols[top.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != top.size ||
          left.next != top.right) {
        continue;
      }
      left.size += right.size;
      right.size = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.left;
      add_pair(left.prev, top.left);
      add_pair(top.left, left.next);
    }
    for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
      Resegment(text.substr(symbols[i].begin, symbols[i].size), rev_merge, ids, 0);
    }
  }

  template <typename RevMerge>
  void Resegment(std::string_view piece, const RevMerge& rev_merge, std::vector<int32_t>* ids,
                 int depth) const {
    auto it = mergeable_.find(piece);
    if (it != mergeable_.end()) {
      if (v_.types[it->second] == PieceType::kUnused && depth < 64) {
        auto r = rev_merge.find(piece);
        if (r != rev_merge.end()) {
          Resegment(r->second.first, rev_merge, ids, depth + 1);
          Resegment(r->second.second, rev_merge, ids, depth + 1);
          return;
        }
      }
      ids->push_back(it->second);
      return;
    }
    // Byte fallback when every byte has a piece, else the unknown piece.
    bool all_bytes = true;
    for (char c : piece) all_bytes = all_bytes && byte_ids_[static_cast<unsigned char>(c)] >= 0;
    if (all_bytes) {
      for (char c : piece) ids->push_back(byte_ids_[static_cast<unsigned char>(c)]);
    } else if (v_.unk_id) {
      ids->push_back(*v_.unk_id);
    }
  }

  SpmVocab v_;
  std::string source_;
  internal::StringMap<int32_t> all_ids_, mergeable_;
  std::array<int32_t, 256> byte_ids_;
  AddedVocabulary specials_, user_defined_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(SpmVocab vocab, std::string source) {
  auto tokenizer = std::make_unique<SpmTokenizer>(std::move(vocab), std::move(source));
  if (absl::Status s = tokenizer->Init(); !s.ok()) return s;
  return tokenizer;
}

}  // namespace linearize::tokenizer
