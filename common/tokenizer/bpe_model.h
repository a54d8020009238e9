// The BPE model of Hugging Face `tokenizers`: a vocabulary, merges applied by
// rank, optional byte fallback / unknown token / ignore_merges. Encodes one
// pre-tokenized piece at a time. Thread-safe; keeps a bounded cache of
// piece -> ids.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "common/tokenizer/str_util.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace linearize::tokenizer {

struct BpeOptions {
  // A piece that is itself in the vocabulary is taken whole (Llama 3).
  bool ignore_merges = false;
  // Characters missing from the vocabulary become <0xXX> byte tokens.
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  // `vocab`: token string -> id (ids in [0, 2^31)); `merges`: pairs in rank
  // order. Errors (naming `source`) for merges whose parts or result are not
  // in the vocabulary, and for an unk_token that is not.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      std::vector<std::pair<std::string, int32_t>> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
      std::string_view source);

  // Appends the ids of one piece.
  void Tokenize(std::string_view piece, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  const internal::StringMap<int32_t>& vocab() const { return vocab_; }

 private:
  struct MergeResult {
    uint32_t rank;
    int32_t new_id;
  };
  BpeModel() = default;
  void MergeWord(std::string_view piece, std::vector<int32_t>* out) const;
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  BpeOptions options_;
  internal::StringMap<int32_t> vocab_;
  absl::flat_hash_map<uint64_t, MergeResult> merges_;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_;  // <0xXX> tokens, -1 if absent

  static constexpr size_t kCacheCapacity = 20000;
  static constexpr size_t kMaxCachedPiece = 256;
  mutable absl::Mutex cache_mutex_;
  mutable internal::StringMap<std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace linearize::tokenizer
