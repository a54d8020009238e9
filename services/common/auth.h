// Bearer-token authentication for every RPC, done by a server interceptor
// (gRPC's AuthMetadataProcessor only runs on TLS ports; this also covers
// plaintext ones).
//
// For each call the interceptor reads the "authorization" metadata, looks
// the token up and applies the access rules; handlers then ask
//   ASSIGN_OR_RETURN(Principal p, PrincipalOf(context));
// and scope everything to p.tenant. gRPC C++ interceptors cannot stop a
// call before its handler runs, so a call that failed authentication still
// reaches the handler: PrincipalOf returns the failure there, and the
// interceptor also replaces whatever status the handler sends with that
// failure, so the client always sees UNAUTHENTICATED / PERMISSION_DENIED.
//
// grpc.health.v1.Health and server reflection need no token.
//
// Auth off (no tokens file): every caller is the tenant named by the
// "x-linearize-tenant" metadata, or "default" without it, with the admin
// role. Meant for a trusted network or a single user.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_interceptor.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/tokens.h"

namespace linearize::server {

inline constexpr std::string_view kTenantHeader = "x-linearize-tenant";
inline constexpr std::string_view kDefaultTenant = "default";

// Roles allowed to call methods whose full name ("/linearize.v1.WorkerService/Heartbeat")
// starts with `method_prefix`.
struct AccessRule {
  std::string method_prefix;
  std::vector<Role> roles;
};

struct AuthOptions {
  // Null: auth off (see above).
  std::shared_ptr<const TokenTable> tokens;
  // The first rule whose prefix matches decides; a method no rule matches
  // is open to every role. The admin role passes every rule (so does every
  // caller with auth off, who is admin).
  std::vector<AccessRule> rules;
};

// Health checks and reflection, which need no token.
bool IsUnauthenticatedMethod(std::string_view method);

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuthInterceptorFactory(
    AuthOptions options);

// The caller of the current RPC, or the reason it was refused:
// UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT (malformed tenant
// header with auth off), or INTERNAL when the server has no auth
// interceptor (not built by linearize::server::Server) or the method is
// health/reflection.
absl::StatusOr<Principal> PrincipalOf(const grpc::ServerContextBase* context);

// PERMISSION_DENIED "role user may not call <what>" unless the principal
// has one of `roles`.
absl::Status RequireRole(const Principal& principal, std::initializer_list<Role> roles,
                         std::string_view what);

}  // namespace linearize::server
