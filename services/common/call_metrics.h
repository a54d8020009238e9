// Per-RPC metrics, recorded by a server interceptor for every method:
//   linearize_grpc_server_handled_total{grpc_service,grpc_method,grpc_code}
//   linearize_grpc_server_handling_seconds{grpc_service,grpc_method} (histogram)
// grpc_code is the canonical name ("OK", "NOT_FOUND", "UNAUTHENTICATED").
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "common/metrics/registry.h"

namespace linearize::server {

// The families are registered in `registry` at once, so they appear (empty)
// before the first call. `registry` must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeCallMetricsInterceptorFactory(metrics::Registry& registry);

}  // namespace linearize::server
