// Checks of the API's shared field conventions (common.proto): labels,
// request ids, names, enum values. Each returns INVALID_ARGUMENT naming
// `field` in proto field syntax and saying what is wrong.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/map.h"
#include "google/protobuf/timestamp.pb.h"

namespace linearize::scheduler {

// At most 64 entries; keys 1-63 of [a-z0-9_.-] starting with a letter;
// values at most 255 bytes of UTF-8.
absl::Status CheckLabels(const google::protobuf::Map<std::string, std::string>& labels,
                         const std::string& field);

// Empty, or 1-128 characters of [A-Za-z0-9._~:-].
absl::Status CheckRequestId(std::string_view id, const std::string& field);

// 1-128 characters of [a-z0-9._-] (model names).
absl::Status CheckModelName(std::string_view name, const std::string& field);

// At most `max_bytes` bytes of valid UTF-8.
absl::Status CheckText(std::string_view text, size_t max_bytes, const std::string& field);

// A server-assigned id: 1-64 printable ASCII characters.
absl::Status CheckId(std::string_view id, const std::string& field);

// A valid google.protobuf.Timestamp (seconds in years 1-9999, nanos in range).
absl::Status CheckTimestamp(const google::protobuf::Timestamp& ts, const std::string& field);

bool IsValidUtf8(std::string_view text);

}  // namespace linearize::scheduler
