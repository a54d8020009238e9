// absl::Status <-> grpc::Status at the service edge. The canonical codes
// are the same numbers in both, so the mapping keeps code and message.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace linearize::server {

// Messages longer than 4 KiB are cut (ending in "...") so that they fit in
// the response trailers.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace linearize::server
