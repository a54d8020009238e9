// A session's model memory as a portable, versioned, checksummed blob: what
// snapshots return, what spilled and persisted sessions are stored as.
//
// Format version 1 (little-endian):
//   "LNZSTATE"  u32 version  u64 header_bytes  header (JSON)  tensor data  sha256
// The header holds the model fingerprint, the position and, per layer, each
// tensor's name, dtype, shape and byte range in the data. The last 32 bytes
// are the SHA-256 of everything before them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"
#include "common/model/memory.h"

namespace linearize::runtime {

inline constexpr uint32_t kStateFormatVersion = 1;

struct StateBlobInfo {
  uint32_t format_version = 0;
  std::string model_fingerprint;
  int64_t position = 0;  // tokens the state has consumed
};

// A session's state: the model memory and the next-token logits [V] after
// the last token it consumed (undefined before the first token).
struct SessionState {
  std::unique_ptr<model::Memory> memory;
  at::Tensor logits;
};

// Encodes a batch-1 memory and its logits (INVALID_ARGUMENT for another
// batch size).
absl::StatusOr<std::string> EncodeState(const model::Memory& memory, const at::Tensor& logits,
                                        std::string_view model_fingerprint);

// Checks the magic, version, checksum and header without building tensors.
// INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<StateBlobInfo> InspectState(std::string_view blob);

// A new memory of `model` holding the blob's state, and its logits (on the
// model's device). INVALID_ARGUMENT for a malformed or corrupt blob;
// FAILED_PRECONDITION when the blob's fingerprint is not `model_fingerprint`
// (a state of another model).
absl::StatusOr<SessionState> DecodeState(std::string_view blob, const model::LlamaModel& model,
                                         std::string_view model_fingerprint);

}  // namespace linearize::runtime
