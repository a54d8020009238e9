// How the `linearize` client commands report a failed call: the server's
// status with its code named first, "<CODE>: <the server's message>".
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace linearize::cli {

// The same form for a local failure on the way to a call (e.g. a channel
// that cannot be made); OK stays OK.
inline absl::Status WithCodeName(const absl::Status& s) {
  if (s.ok()) return s;
  return absl::Status(s.code(),
                      absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message()));
}

inline absl::Status RpcError(const grpc::Status& s) {
  return WithCodeName(
      absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message()));
}

}  // namespace linearize::cli
