// Field checks of SubmitConversionRequest (everything that needs neither
// the file system nor the store): ranges, enums, oneofs, sizes, name and
// path forms. The first problem found is returned as INVALID_ARGUMENT whose
// message names the field in proto syntax, e.g.
// "spec.recipe.lolcats.window_size: must be in [1, 8192] (0 means 64), got 9000".
#pragma once

#include "absl/status/status.h"
#include "linearize/v1/job_service.pb.h"

namespace linearize::scheduler {

absl::Status ValidateSubmitRequest(const linearize::v1::SubmitConversionRequest& request);

}  // namespace linearize::scheduler
