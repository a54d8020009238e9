#include "common/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/byte_level.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {
namespace {

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeTokenizerParts parts)
      : parts_(std::move(parts)), added_(parts_.added_tokens) {}

  absl::Status Init() {
    int64_t max_id = -1;
    size_t count = 0;
    for (const auto& [token, id] : parts_.model->vocab()) {
      max_id = std::max<int64_t>(max_id, id);
      ++count;
    }
    for (const AddedToken& t : parts_.added_tokens) {
      if (t.id < 0) {
        return absl::InvalidArgumentError(
            internal::StrCat(parts_.source, ": added token \"", t.content, "\" has a negative id"));
      }
      max_id = std::max<int64_t>(max_id, t.id);
      ++count;
    }
    if (max_id >= static_cast<int64_t>(4 * count + 1024)) {
      return absl::InvalidArgumentError(internal::StrCat(parts_.source, ": token id ", max_id,
                                                     " is far beyond the ", count,
                                                     " tokens (ids are too sparse)"));
    }
    const size_t n = static_cast<size_t>(max_id + 1);
    bytes_.assign(n, std::string());
    known_.assign(n, false);
    special_.assign(n, false);
    for (const auto& [token, id] : parts_.model->vocab()) {
      bytes_[id] = ByteLevelDecodeToken(token);
      known_[id] = true;
    }
    // Added tokens take precedence for decoding, and for TokenId.
    for (const AddedToken& t : parts_.added_tokens) {
      bytes_[t.id] = ByteLevelDecodeToken(t.content);
      known_[t.id] = true;
      special_[t.id] = special_[t.id] || t.special;
      added_ids_.emplace(t.content, t.id);
    }
    for (int32_t id : parts_.prefix_ids) {
      if (id < 0 || static_cast<size_t>(id) >= n) {
        return absl::InvalidArgumentError(
            internal::StrCat(parts_.source, ": post-processor token id ", id, " is out of range"));
      }
    }
    for (int32_t id : parts_.suffix_ids) {
      if (id < 0 || static_cast<size_t>(id) >= n) {
        return absl::InvalidArgumentError(
            internal::StrCat(parts_.source, ": post-processor token id ", id, " is out of range"));
      }
    }
    for (auto id : {parts_.bos_id, parts_.eos_id}) {
      if (id && (*id < 0 || static_cast<size_t>(*id) >= n)) {
        return absl::InvalidArgumentError(
            internal::StrCat(parts_.source, ": bos/eos token id ", *id, " is out of range"));
      }
    }
    return absl::OkStatus();
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    std::string repaired;
    if (!IsValidUtf8(text)) {
      repaired = RepairUtf8(text);
      text = repaired;
    }
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = parts_.prefix_ids;
    std::vector<std::string> pieces;
    for (const TextSegment& raw : added_.Split(text, /*normalized=*/false)) {
      if (raw.token_id >= 0) {
        ids.push_back(raw.token_id);
        continue;
      }
      std::string_view raw_text = text.substr(raw.begin, raw.end - raw.begin);
      std::string normalized = parts_.normalizer != nullptr
                                   ? parts_.normalizer->Normalize(raw_text)
                                   : std::string(raw_text);
      for (const TextSegment& seg : added_.Split(normalized, /*normalized=*/true)) {
        if (seg.token_id >= 0) {
          ids.push_back(seg.token_id);
          continue;
        }
        pieces.clear();
        pieces.push_back(normalized.substr(seg.begin, seg.end - seg.begin));
        if (parts_.pre_tokenizer != nullptr) parts_.pre_tokenizer->Apply(&pieces);
        for (const std::string& piece : pieces) parts_.model->Tokenize(piece, &ids);
      }
    }
    if (add_special_tokens) {
      ids.insert(ids.end(), parts_.suffix_ids.begin(), parts_.suffix_ids.end());
    }
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    for (int32_t id : ids) {
      if (!Known(id) || (skip_special_tokens && special_[id])) continue;
      out.append(bytes_[id]);
    }
    return out;
  }

  std::string TokenBytes(int32_t id) const override {
    return Known(id) ? bytes_[id] : std::string();
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(bytes_.size()); }

  std::optional<int32_t> TokenId(std::string_view token) const override {
    auto it = added_ids_.find(token);
    if (it != added_ids_.end()) return it->second;
    return parts_.model->TokenToId(token);
  }

  bool IsSpecial(int32_t id) const override { return Known(id) && special_[id]; }
  std::optional<int32_t> bos_id() const override { return parts_.bos_id; }
  std::optional<int32_t> eos_id() const override { return parts_.eos_id; }

 private:
  bool Known(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < known_.size() && known_[id];
  }

  BpeTokenizerParts parts_;
  AddedVocabulary added_;
  std::vector<std::string> bytes_;  // id -> decoded bytes
  std::vector<bool> known_, special_;
  internal::StringMap<int32_t> added_ids_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(BpeTokenizerParts parts) {
  if (parts.model == nullptr) {
    return absl::InvalidArgumentError(internal::StrCat(parts.source, ": no BPE model"));
  }
  auto tokenizer = std::make_unique<BpeTokenizer>(std::move(parts));
  if (absl::Status s = tokenizer->Init(); !s.ok()) return s;
  return tokenizer;
}

}  // namespace linearize::tokenizer
