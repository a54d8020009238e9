// A thin, Abseil-free facade over libsentencepiece's SentencePieceProcessor.
// libsentencepiece's header declares absl::string_view as std::string_view,
// which clashes with this Abseil's own absl::string_view, so only
// sp_processor.cc includes it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace linearize::tokenizer {

class SpProcessor {
 public:
  SpProcessor();
  ~SpProcessor();
  SpProcessor(const SpProcessor&) = delete;
  SpProcessor& operator=(const SpProcessor&) = delete;

  // Empty string on success, else sentencepiece's message.
  std::string Load(const std::string& path);
  // False only if the model is not loaded.
  bool Encode(std::string_view text, std::vector<int>* ids) const;
  bool EncodePieces(std::string_view text, std::vector<std::string>* pieces) const;
  int PieceSize() const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsByte(int id) const;
  int bos_id() const;
  int eos_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace linearize::tokenizer
