#include "common/tokenizer/bpe_model.h"

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    std::vector<std::pair<std::string, int32_t>> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
    std::string_view source) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->options_ = std::move(options);
  model->vocab_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          internal::StrCat(source, ": vocabulary id ", id, " of \"", token, "\" is negative"));
    }
    model->vocab_[std::move(token)] = id;
  }
  const size_t prefix_len = model->options_.continuing_subword_prefix.size();
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = model->vocab_.find(a);
    auto ib = model->vocab_.find(b);
    if (ia == model->vocab_.end() || ib == model->vocab_.end()) {
      return absl::InvalidArgumentError(internal::StrCat(
          source, ": merge ", rank, " (\"", a, "\", \"", b, "\") uses a token not in the vocabulary"));
    }
    // The second part carries the continuing-subword prefix, which the
    // merged token does not repeat.
    std::string merged = a;
    merged.append(b.size() >= prefix_len && b.compare(0, prefix_len, model->options_.continuing_subword_prefix) == 0
                      ? b.substr(prefix_len)
                      : b);
    auto im = model->vocab_.find(merged);
    if (im == model->vocab_.end()) {
      return absl::InvalidArgumentError(internal::StrCat(source, ": merge ", rank, " result \"",
                                                     merged, "\" is not in the vocabulary"));
    }
    // A repeated merge keeps its last rank, as a HashMap built in order does.
    model->merges_[PairKey(ia->second, ib->second)] =
        MergeResult{static_cast<uint32_t>(rank), im->second};
  }
  model->byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    auto it = model->vocab_.find(absl::StrFormat("<0x%02X>", b));
    if (it != model->vocab_.end()) model->byte_ids_[b] = it->second;
  }
  if (model->options_.unk_token.has_value()) {
    auto it = model->vocab_.find(*model->options_.unk_token);
    if (it == model->vocab_.end()) {
      return absl::InvalidArgumentError(internal::StrCat(
          source, ": unk_token \"", *model->options_.unk_token, "\" is not in the vocabulary"));
    }
    model->unk_id_ = it->second;
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::Tokenize(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  MergeWord(piece, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(piece), std::move(ids));
  }
}

// Hugging Face's BPE::merge_word followed by Word::merge_all.
void BpeModel::MergeWord(std::string_view piece, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool removed;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  auto add = [&symbols](int32_t id) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back(Symbol{id, index - 1, -1, false});
  };
  int32_t pending_unk = -1;  // unk id waiting to be added (fused), or -1
  std::string key;
  size_t pos = 0;
  while (pos < piece.size()) {
    char32_t cp;
    size_t len = DecodeUtf8(piece, pos, &cp);
    if (len == 0) len = 1;  // not expected: pieces are valid UTF-8
    const bool is_first = pos == 0, is_last = pos + len >= piece.size();
    key.clear();
    if (!is_first) key.append(options_.continuing_subword_prefix);
    key.append(piece.substr(pos, len));
    if (is_last) key.append(options_.end_of_word_suffix);
    pos += len;
    auto it = vocab_.find(key);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : key) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        // Hugging Face does not flush a pending unk here; nor do we.
        for (char c : key) add(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !options_.fuse_unk) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Merge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // Lowest rank first; among equal ranks the leftmost.
  auto later = [](const Merge& x, const Merge& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::priority_queue<Merge, std::vector<Merge>, decltype(later)> queue(later);
  auto push_pair = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push(Merge{it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip entries made stale by earlier merges.
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (!s.removed) out->push_back(s.id);
  }
}

}  // namespace linearize::tokenizer
