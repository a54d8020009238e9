#include "common/tokenizer/sp_processor.h"

#include <sentencepiece_processor.h>

namespace linearize::tokenizer {

struct SpProcessor::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SpProcessor::SpProcessor() : impl_(std::make_unique<Impl>()) {}
SpProcessor::~SpProcessor() = default;

std::string SpProcessor::Load(const std::string& path) {
  const auto status = impl_->sp.Load(path);
  return status.ok() ? std::string() : status.ToString();
}

bool SpProcessor::Encode(std::string_view text, std::vector<int>* ids) const {
  return impl_->sp.Encode(text, ids).ok();
}

bool SpProcessor::EncodePieces(std::string_view text, std::vector<std::string>* pieces) const {
  return impl_->sp.Encode(text, pieces).ok();
}

int SpProcessor::PieceSize() const { return impl_->sp.GetPieceSize(); }
std::string SpProcessor::IdToPiece(int id) const { return impl_->sp.IdToPiece(id); }
int SpProcessor::PieceToId(std::string_view piece) const { return impl_->sp.PieceToId(piece); }
bool SpProcessor::IsControl(int id) const { return impl_->sp.IsControl(id); }
bool SpProcessor::IsUnknown(int id) const { return impl_->sp.IsUnknown(id); }
bool SpProcessor::IsByte(int id) const { return impl_->sp.IsByte(id); }
int SpProcessor::bos_id() const { return impl_->sp.bos_id(); }
int SpProcessor::eos_id() const { return impl_->sp.eos_id(); }

}  // namespace linearize::tokenizer
