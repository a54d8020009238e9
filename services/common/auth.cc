#include "services/common/auth.h"

#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "services/common/status.h"

namespace linearize::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The auth result of every call in flight, keyed by its server context.
// Each entry is owned by the interceptor of that call and removed when the
// call ends (gRPC destroys the interceptor with the call).
class CallTable {
 public:
  void Put(const grpc::ServerContextBase* ctx, const void* owner, absl::StatusOr<Principal> r) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.insert_or_assign(ctx, Entry{owner, std::move(r)});
  }
  void Erase(const grpc::ServerContextBase* ctx, const void* owner) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(ctx);
    if (it != calls_.end() && it->second.owner == owner) calls_.erase(it);
  }
  absl::StatusOr<Principal> Get(const grpc::ServerContextBase* ctx) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(ctx);
    if (it == calls_.end()) {
      return absl::InternalError(
          "no principal for this call: the server has no auth interceptor "
          "(build it with linearize::server::Server)");
    }
    return it->second.result;
  }

 private:
  struct Entry {
    const void* owner;
    absl::StatusOr<Principal> result;
  };
  mutable std::mutex mu_;
  absl::flat_hash_map<const grpc::ServerContextBase*, Entry> calls_;
};

CallTable& Calls() {
  static CallTable* table = new CallTable();
  return *table;
}

std::string_view ToView(grpc::string_ref s) { return std::string_view(s.data(), s.size()); }

std::string JoinRoles(const std::vector<Role>& roles) {
  std::string out;
  for (Role r : roles) {
    if (!out.empty()) out += ", ";
    out += RoleName(r);
  }
  return out;
}

class AuthInterceptor : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(grpc::experimental::ServerRpcInfo* info, const AuthOptions* options)
      : info_(info), options_(options), exempt_(IsUnauthenticatedMethod(info->method())) {}

  ~AuthInterceptor() override {
    if (!exempt_) Calls().Erase(info_->server_context(), this);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!exempt_) {
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
        absl::StatusOr<Principal> result = Authenticate(*methods->GetRecvInitialMetadata());
        if (!result.ok()) failure_ = result.status();
        Calls().Put(info_->server_context(), this, std::move(result));
      }
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
          !failure_.ok()) {
        methods->ModifySendStatus(ToGrpcStatus(failure_));
      }
    }
    methods->Proceed();
  }

 private:
  absl::StatusOr<Principal> Authenticate(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
    absl::StatusOr<Principal> principal;
    if (options_->tokens == nullptr) {
      Principal p;
      p.tenant = std::string(kDefaultTenant);
      p.role = Role::kAdmin;
      auto it = metadata.find(grpc::string_ref(kTenantHeader.data(), kTenantHeader.size()));
      if (it != metadata.end()) {
        std::string_view tenant = ToView(it->second);
        if (!IsValidTenant(tenant)) {
          return absl::InvalidArgumentError(absl::StrCat(
              std::string(kTenantHeader), ": must be 1 to 64 characters from [A-Za-z0-9._-]"));
        }
        p.tenant = std::string(tenant);
      }
      principal = std::move(p);
    } else {
      auto it = metadata.find("authorization");
      std::string_view value = it == metadata.end() ? std::string_view() : ToView(it->second);
      principal = options_->tokens->Authenticate(value);
      if (!principal.ok()) return principal.status();
    }
    const std::string_view method = info_->method();
    if (principal->role == Role::kAdmin) return principal;  // admin may call everything
    for (const AccessRule& rule : options_->rules) {
      if (!method.starts_with(rule.method_prefix)) continue;
      for (Role r : rule.roles) {
        if (r == principal->role) return principal;
      }
      return absl::PermissionDeniedError(
          absl::StrCat("role ", std::string(RoleName(principal->role)), " may not call ",
                       std::string(method), " (allowed: ", JoinRoles(rule.roles), ")"));
    }
    return principal;
  }

  grpc::experimental::ServerRpcInfo* info_;
  const AuthOptions* options_;
  const bool exempt_;
  absl::Status failure_;
};

class AuthInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit AuthInterceptorFactory(AuthOptions options) : options_(std::move(options)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new AuthInterceptor(info, &options_);
  }

 private:
  const AuthOptions options_;
};

}  // namespace

bool IsUnauthenticatedMethod(std::string_view method) {
  return method.starts_with("/grpc.health.v1.Health/") ||
         method.starts_with("/grpc.reflection.v1alpha.ServerReflection/") ||
         method.starts_with("/grpc.reflection.v1.ServerReflection/");
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuthInterceptorFactory(
    AuthOptions options) {
  return std::make_unique<AuthInterceptorFactory>(std::move(options));
}

absl::StatusOr<Principal> PrincipalOf(const grpc::ServerContextBase* context) {
  return Calls().Get(context);
}

absl::Status RequireRole(const Principal& principal, std::initializer_list<Role> roles,
                         std::string_view what) {
  for (Role r : roles) {
    if (r == principal.role) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("role ", std::string(RoleName(principal.role)),
                                                  " may not call ", std::string(what)));
}

}  // namespace linearize::server
