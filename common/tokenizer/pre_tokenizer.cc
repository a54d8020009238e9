#include "common/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "common/tokenizer/str_util.h"
#include "common/tokenizer/byte_level.h"

namespace linearize::tokenizer {
namespace {

using Span = std::pair<size_t, size_t>;

// Hugging Face's Pattern::find_matches: the text cut into matches and the
// gaps between them, each flagged.
std::vector<std::pair<Span, bool>> MatchesAndGaps(const Regex& regex, std::string_view text) {
  std::vector<Span> found;
  // On a regex failure (limits) the matches found so far are kept and the
  // rest of the text becomes one gap.
  regex.FindAll(text, &found);
  std::vector<std::pair<Span, bool>> out;
  size_t prev = 0;
  for (const auto& [start, end] : found) {
    if (start < prev) continue;
    if (prev != start) out.push_back({{prev, start}, false});
    out.push_back({{start, end}, true});
    prev = end;
  }
  if (prev != text.size()) out.push_back({{prev, text.size()}, false});
  return out;
}

// NormalizedString::split: applies `behavior` to the flagged spans and
// returns the kept ones.
std::vector<Span> ApplyBehavior(std::vector<std::pair<Span, bool>> matches,
                                SplitBehavior behavior) {
  std::vector<std::pair<Span, bool>> kept;  // (span, remove)
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& [span, is_match] : matches) kept.push_back({span, false});
      break;
    case SplitBehavior::kRemoved:
      kept = std::move(matches);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (auto& [span, is_match] : matches) {
        if (is_match && !previous_match && !kept.empty()) {
          kept.back().first.second = span.second;
        } else {
          kept.push_back({span, false});
        }
        previous_match = is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        const auto& [span, is_match] = *it;
        if (is_match && !previous_match && !kept.empty()) {
          kept.back().first.first = span.first;
        } else {
          kept.push_back({span, false});
        }
        previous_match = is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case SplitBehavior::kContiguous:
      for (auto& [span, is_match] : matches) {
        if (is_match == previous_match && !kept.empty()) {
          kept.back().first.second = span.second;
        } else {
          kept.push_back({span, false});
        }
        previous_match = is_match;
      }
      break;
  }
  std::vector<Span> out;
  for (const auto& [span, remove] : kept) {
    if (!remove && span.second > span.first) out.push_back(span);
  }
  return out;
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}

  void Apply(std::vector<std::string>* pieces) const override {
    std::vector<std::string> out;
    for (const std::string& piece : *pieces) {
      if (piece.empty()) continue;
      auto matches = MatchesAndGaps(*regex_, piece);
      if (invert_) {
        for (auto& m : matches) m.second = !m.second;
      }
      for (const auto& [start, end] : ApplyBehavior(std::move(matches), behavior_)) {
        out.emplace_back(piece.substr(start, end - start));
      }
    }
    *pieces = std::move(out);
  }

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<PreTokenizer> split)
      : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}

  void Apply(std::vector<std::string>* pieces) const override {
    // The prefix space goes on every piece that reaches this step, as in
    // Hugging Face (which applies it per split).
    if (add_prefix_space_) {
      for (std::string& piece : *pieces) {
        if (!piece.empty() && piece[0] != ' ') piece.insert(piece.begin(), ' ');
      }
    }
    if (split_ != nullptr) split_->Apply(pieces);
    std::vector<std::string> out;
    out.reserve(pieces->size());
    for (const std::string& piece : *pieces) {
      if (!piece.empty()) out.push_back(BytesToUnicode(piece));
    }
    *pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<PreTokenizer> split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void Apply(std::vector<std::string>* pieces) const override {
    for (const auto& step : steps_) step->Apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

std::string EscapeRegex(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-#&~ \t\n\r\v\f").find(c) != std::string_view::npos) {
      // \Q..\E would be simpler, but cannot hold a literal "\E".
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
        internal::StrAppend(&out, "\\x{", absl::Hex(static_cast<unsigned char>(c)), "}");
        continue;
      }
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(
      internal::StrCat("unknown split behavior \"", name,
                   "\" (known: Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                   "Contiguous)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeSplit(std::string_view pattern, bool is_regex,
                                                        SplitBehavior behavior, bool invert) {
  if (!is_regex && pattern.empty()) {
    // An empty literal never matches: the text stays one piece.
    return MakeSequence({});
  }
  auto regex = Regex::Compile(is_regex ? std::string(pattern) : EscapeRegex(pattern));
  if (!regex.ok()) return regex.status();
  return std::make_unique<SplitPreTokenizer>(std::move(*regex), behavior, invert);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeDigits(bool individual_digits) {
  // Rust's char::is_numeric is the N* general categories.
  return MakeSplit(R"(\p{N})", true,
                   individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
                   false);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeByteLevel(bool add_prefix_space,
                                                            bool use_regex) {
  std::unique_ptr<PreTokenizer> split;
  if (use_regex) {
    auto s = MakeSplit(kGpt2Pattern, true, SplitBehavior::kIsolated, false);
    if (!s.ok()) return s.status();
    split = std::move(*s);
  }
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(split));
}

std::unique_ptr<PreTokenizer> MakeSequence(std::vector<std::unique_ptr<PreTokenizer>> steps) {
  return std::make_unique<SequencePreTokenizer>(std::move(steps));
}

}  // namespace linearize::tokenizer
