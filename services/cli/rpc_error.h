// How the `linearize` client commands report a failed call: the server's
// status with its code named first, "<CODE>: <the server's message>".
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace linearize::cli {

inline absl::Status RpcError(const grpc::Status& s) {
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  return absl::Status(code, absl::StrCat(absl::StatusCodeToString(code), ": ", s.error_message()));
}

}  // namespace linearize::cli
