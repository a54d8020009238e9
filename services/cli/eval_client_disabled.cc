// eval_client.h for a `linearize` built without the services (no gRPC).
#include "services/cli/eval_client.h"

namespace linearize::cli {

absl::Status RunEvalOnServer(const EvalArgs&) {
  return absl::UnimplementedError(
      "eval --server talks to linearize-evaluator over gRPC, and this linearize was built "
      "without the services (-DLINEARIZE_WITH_SERVICES=OFF); run it locally (no --server)");
}

}  // namespace linearize::cli
