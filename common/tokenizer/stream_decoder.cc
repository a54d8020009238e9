#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/utf8.h"

namespace linearize::tokenizer {

std::string StreamDecoder::Push(int32_t id) {
  if (skip_special_ && tokenizer_.IsSpecial(id)) return std::string();
  pending_.append(tokenizer_.TokenBytes(id));
  // Emit everything up to a character that more bytes could still complete;
  // bytes that can never become valid are replaced now.
  const size_t complete = CompleteUtf8Prefix(pending_);
  std::string out = RepairUtf8(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = RepairUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace linearize::tokenizer
