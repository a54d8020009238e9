#include "services/common/call_metrics.h"

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace linearize::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

struct CallFamilies {
  metrics::Family<metrics::Counter>* handled;
  metrics::Family<metrics::Histogram>* seconds;
};

// RPC latencies from 1 ms to about 4.5 minutes (long polls and streams).
const metrics::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new metrics::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 270};
  return *buckets;
}

class CallMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  CallMetricsInterceptor(grpc::experimental::ServerRpcInfo* info, const CallFamilies* families)
      : families_(families), start_(std::chrono::steady_clock::now()) {
    // "/package.Service/Method"
    std::string_view method = info->method();
    if (!method.empty() && method.front() == '/') method.remove_prefix(1);
    const size_t slash = method.find('/');
    service_ = std::string(method.substr(0, slash));
    method_ = slash == std::string_view::npos ? "" : std::string(method.substr(slash + 1));
  }

  // The call is over when gRPC destroys its interceptors.
  ~CallMetricsInterceptor() override {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    families_->handled
        ->Add({{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_code", code_}})
        .Increment();
    families_->seconds
        ->Add({{"grpc_service", service_}, {"grpc_method", method_}}, LatencyBuckets())
        .Observe(seconds);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      // Interceptors registered before this one (auth) may have changed it.
      code_ = absl::StatusCodeToString(
          static_cast<absl::StatusCode>(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  const CallFamilies* families_;
  std::chrono::steady_clock::time_point start_;
  std::string service_;
  std::string method_;
  std::string code_ = "CANCELLED";  // no status sent: the call was cancelled
};

class CallMetricsFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallMetricsFactory(metrics::Registry& registry) {
    families_.handled = &metrics::BuildCounter()
                             .Name("linearize_grpc_server_handled_total")
                             .Help("RPCs completed on the server, by method and status code.")
                             .Register(registry);
    families_.seconds = &metrics::BuildHistogram()
                             .Name("linearize_grpc_server_handling_seconds")
                             .Help("Time from an RPC's start to its end on the server.")
                             .Register(registry);
  }
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallMetricsInterceptor(info, &families_);
  }

 private:
  CallFamilies families_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeCallMetricsInterceptorFactory(metrics::Registry& registry) {
  return std::make_unique<CallMetricsFactory>(registry);
}

}  // namespace linearize::server
