// Page tokens of the list RPCs: an opaque, URL-safe encoding of where the
// previous page ended plus a fingerprint of the request's filters, so a
// token used with other filters is recognised (INVALID_ARGUMENT).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace linearize::scheduler {

// A short, stable fingerprint of `filters` (deterministic serialization).
std::string FilterFingerprint(const google::protobuf::Message& filters);

// Encodes `kind`, the fingerprint and the position fields into a token.
std::string EncodePageToken(std::string_view kind, std::string_view fingerprint,
                            const std::vector<std::string>& position);

// Decodes a token made by EncodePageToken with the same kind, fingerprint
// and number of position fields; INVALID_ARGUMENT naming page_token
// otherwise.
absl::StatusOr<std::vector<std::string>> DecodePageToken(std::string_view token,
                                                         std::string_view kind,
                                                         std::string_view fingerprint,
                                                         size_t position_fields);

}  // namespace linearize::scheduler
