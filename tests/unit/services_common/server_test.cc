// An in-process server built by Server::Start, called over real loopback
// sockets: auth, access rules, health and reflection without a token,
// tenant propagation, size limits, TLS and mutual TLS, metrics, draining.
#include "services/common/server.h"

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "linearize/v1/worker_service.grpc.pb.h"
#include "services/common/client.h"
#include "services/common/status.h"
#include "tests/unit/services_common/test_pki.h"

namespace linearize::server {
namespace {

namespace v1 = linearize::v1;

constexpr char kUserToken[] = "user-token-0123456789";
constexpr char kWorkerToken[] = "worker-token-0123456789";
constexpr char kAdminToken[] = "admin-token-0123456789";

// GetJob scopes by tenant like a real service (and names the tenant so the
// test can see it); ListJobs forgets to check auth on purpose.
class FakeJobService final : public v1::JobService::Service {
 public:
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* job) override {
    auto principal = PrincipalOf(context);
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    return ToGrpcStatus(absl::NotFoundError("job_id: no job \"" + request->job_id() +
                                            "\" for tenant " + principal->tenant));
  }
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse*) override {
    return grpc::Status::OK;
  }
};

class FakeWorkerService final : public v1::WorkerService::Service {
 public:
  grpc::Status RegisterWorker(grpc::ServerContext* context, const v1::RegisterWorkerRequest*,
                              v1::RegisterWorkerResponse* response) override {
    auto principal = PrincipalOf(context);
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    response->set_worker_id("w-" + principal->tenant);
    return grpc::Status::OK;
  }
};

// A unary call with raw bytes: for grpc.health.v1, whose C++ stubs Debian
// does not ship. HealthCheckResponse{status: SERVING} is 08 01.
grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                      const std::string& request, std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  auto call = stub.PrepareUnaryCall(&context, method, request_buffer, &cq);
  call->StartCall();
  grpc::ByteBuffer response_buffer;
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  std::vector<grpc::Slice> slices;
  response->clear();
  if (response_buffer.Dump(&slices).ok()) {
    for (const auto& s : slices)
      response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

std::string HealthOf(const std::shared_ptr<grpc::Channel>& channel) {
  std::string response;
  grpc::Status status = RawUnary(channel, "/grpc.health.v1.Health/Check", "", &response);
  if (!status.ok()) return "error " + std::to_string(status.error_code());
  if (response == std::string("\x08\x01", 2)) return "SERVING";
  if (response == std::string("\x08\x02", 2)) return "NOT_SERVING";
  return "unexpected";
}

// Asks server reflection for its service list (a bidi stream of raw
// bytes: ServerReflectionRequest{list_services: ""} is 3a 00).
std::string ReflectionServiceList(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  void* tag;
  bool ok;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (ok && response.Dump(&slices).ok()) {
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  return bytes;
}

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    if (write(fd, request.data(), request.size()) > 0) {
      char buf[4096];
      for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
    }
  }
  close(fd);
  return out;
}

double CounterValue(metrics::Registry& registry, const std::string& name,
                    const std::vector<metrics::ClientMetric::Label>& want) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      bool match = true;
      for (const auto& l : want) {
        bool found = false;
        for (const auto& have : m.label) found |= have == l;
        match &= found;
      }
      if (match) return m.counter.value;
    }
  }
  return 0;
}

grpc::Status GetJob(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                    const std::string& job_id = "j-1",
                    const std::pair<std::string, std::string>& header = {}) {
  auto stub = v1::JobService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (token == "raw:") {
  } else if (token.starts_with("raw:")) {
    context.AddMetadata("authorization", token.substr(4));
  } else {
    AttachBearerToken(&context, token);
  }
  if (!header.first.empty()) context.AddMetadata(header.first, header.second);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  return stub->GetJob(&context, request, &job);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/server_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    tokens_file_ = dir_ + "/tokens";
    std::ofstream(tokens_file_) << kUserToken << " acme user\n"
                                << kWorkerToken << " ops worker\n"
                                << kAdminToken << " root admin\n";
  }
  void TearDown() override {
    server_.reset();
    testing::RemoveTree(dir_);
  }

  void Start(ServerOptions options) {
    registry_ = std::make_shared<metrics::Registry>();
    auto server = Server::Start(options, {&jobs_, &workers_}, registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::shared_ptr<grpc::Channel> Channel(ClientOptions options = {}) {
    options.target = "127.0.0.1:" + std::to_string(server_->port());
    auto channel = CreateChannel(options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return *channel;
  }

  std::string dir_;
  std::string tokens_file_;
  FakeJobService jobs_;
  FakeWorkerService workers_;
  std::shared_ptr<metrics::Registry> registry_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, TokensDecideWhoCallsAndAsWhichTenant) {
  ServerOptions options;
  options.tokens_file = tokens_file_;
  options.metrics_listen_address = "127.0.0.1:0";
  options.access_rules = {{"/linearize.v1.WorkerService/", {Role::kWorker}}};
  Start(options);
  EXPECT_TRUE(server_->auth());
  auto channel = Channel();

  grpc::Status missing = GetJob(channel, "");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.error_message().find("missing bearer token"), std::string::npos)
      << missing.error_message();
  grpc::Status wrong = GetJob(channel, "not-a-known-token-123");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(wrong.error_message().find("invalid bearer token"), std::string::npos);
  grpc::Status malformed = GetJob(channel, std::string("raw:Token ") + kUserToken);
  EXPECT_EQ(malformed.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(malformed.error_message().find("expected \"Bearer <token>\""), std::string::npos);

  grpc::Status good = GetJob(channel, kUserToken);
  EXPECT_EQ(good.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(good.error_message(), "job_id: no job \"j-1\" for tenant acme");

  // A handler that ignores auth still answers UNAUTHENTICATED.
  {
    auto stub = v1::JobService::NewStub(channel);
    grpc::ClientContext context;
    v1::ListJobsResponse response;
    grpc::Status s = stub->ListJobs(&context, v1::ListJobsRequest(), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  // Access rules: the worker API is for worker tokens (and admin).
  auto workers = v1::WorkerService::NewStub(channel);
  for (const auto& [token, code] : std::vector<std::pair<std::string, grpc::StatusCode>>{
           {kUserToken, grpc::StatusCode::PERMISSION_DENIED},
           {kWorkerToken, grpc::StatusCode::OK},
           {kAdminToken, grpc::StatusCode::OK}}) {
    grpc::ClientContext context;
    AttachBearerToken(&context, token);
    v1::RegisterWorkerResponse response;
    grpc::Status s = workers->RegisterWorker(&context, v1::RegisterWorkerRequest(), &response);
    EXPECT_EQ(s.error_code(), code) << token << ": " << s.error_message();
    if (s.ok()) {
      EXPECT_EQ(response.worker_id(), token == kAdminToken ? "w-root" : "w-ops");
    } else {
      EXPECT_EQ(s.error_message(),
                "role user may not call /linearize.v1.WorkerService/RegisterWorker "
                "(allowed: worker)");
    }
  }

  // Health and reflection need no token.
  EXPECT_EQ(HealthOf(channel), "SERVING");
  const std::string services = ReflectionServiceList(channel);
  EXPECT_NE(services.find("linearize.v1.JobService"), std::string::npos);
  EXPECT_NE(services.find("linearize.v1.WorkerService"), std::string::npos);
  EXPECT_NE(services.find("grpc.health.v1.Health"), std::string::npos);

  // Per-RPC metrics carry the status the client saw. A call is counted when
  // the server is done with it (its interceptors are destroyed), which can
  // be just after the client has its status: each count is awaited (5 s at
  // most) before it is compared.
  auto handled = [&](const std::string& method, const std::string& code, double want) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    double got = 0;
    while ((got = CounterValue(*registry_, "linearize_grpc_server_handled_total",
                               {{"grpc_service", "linearize.v1.JobService"},
                                {"grpc_method", method},
                                {"grpc_code", code}})) != want &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return got;
  };
  EXPECT_EQ(handled("GetJob", "UNAUTHENTICATED", 3), 3);
  EXPECT_EQ(handled("GetJob", "NOT_FOUND", 1), 1);
  EXPECT_EQ(handled("ListJobs", "UNAUTHENTICATED", 1), 1);
  EXPECT_EQ(handled("ListJobs", "OK", 0), 0);

  // ... and are on /metrics with the process metrics.
  ASSERT_GT(server_->metrics_port(), 0);
  const std::string scrape = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(scrape.find("linearize_grpc_server_handled_total{grpc_code=\"NOT_FOUND\","
                        "grpc_method=\"GetJob\",grpc_service=\"linearize.v1.JobService\"} 1"),
            std::string::npos)
      << scrape;
  EXPECT_NE(scrape.find("linearize_grpc_server_handling_seconds_bucket"), std::string::npos);
  EXPECT_NE(scrape.find("process_resident_memory_bytes"), std::string::npos);
}

TEST_F(ServerTest, AuthOffUsesTheTenantHeader) {
  Start(ServerOptions());
  EXPECT_FALSE(server_->auth());
  auto channel = Channel();
  EXPECT_EQ(GetJob(channel, "").error_message(), "job_id: no job \"j-1\" for tenant default");
  EXPECT_EQ(GetJob(channel, "", "j-2", {"x-linearize-tenant", "team-a"}).error_message(),
            "job_id: no job \"j-2\" for tenant team-a");
  grpc::Status bad = GetJob(channel, "", "j-1", {"x-linearize-tenant", "no/slashes"});
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("x-linearize-tenant"), std::string::npos);
}

TEST_F(ServerTest, OversizedRequestsAreRefused) {
  ServerOptions options;
  options.max_receive_message_bytes = 1024;
  Start(options);
  auto channel = Channel();
  EXPECT_EQ(GetJob(channel, "", std::string(100, 'j')).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetJob(channel, "", std::string(2000, 'j')).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ServerTest, TlsAndMutualTls) {
  const std::string pki = testing::MakeTestPki();
  ASSERT_FALSE(pki.empty()) << "openssl failed";
  ServerOptions options;
  options.tls = {pki + "/server.pem", pki + "/server.key", ""};
  Start(options);
  EXPECT_TRUE(server_->tls());
  // A TLS client that trusts the CA gets through; a plaintext one does not.
  EXPECT_EQ(GetJob(Channel({.tls = {.ca_file = pki + "/ca.pem"}}), "").error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetJob(Channel(), "").error_code(), grpc::StatusCode::UNAVAILABLE);
  // One that trusts another CA refuses the server.
  EXPECT_EQ(GetJob(Channel({.tls = {.ca_file = pki + "/other_ca.pem"}}), "").error_code(),
            grpc::StatusCode::UNAVAILABLE);
  server_.reset();

  options.tls.ca_file = pki + "/ca.pem";  // mutual TLS
  Start(options);
  EXPECT_EQ(GetJob(Channel({.tls = {.ca_file = pki + "/ca.pem"}}), "").error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(
      GetJob(Channel({.tls = {pki + "/client.pem", pki + "/client.key", pki + "/ca.pem"}}), "")
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
  server_.reset();
  testing::RemoveTree(pki);
}

TEST_F(ServerTest, BadOptionsNameWhatIsWrong) {
  auto start = [](ServerOptions options) { return Server::Start(options, {}, nullptr).status(); };
  ServerOptions o;
  o.tokens_file = dir_ + "/missing";
  EXPECT_EQ(start(o).code(), absl::StatusCode::kNotFound);
  EXPECT_NE(start(o).message().find("tokens file"), std::string::npos);
  o = ServerOptions();
  o.tls.cert_file = dir_ + "/cert.pem";
  EXPECT_EQ(start(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(start(o).message().find("tls_cert and tls_key"), std::string::npos);
  o = ServerOptions();
  o.tls = {tokens_file_, tokens_file_, ""};
  EXPECT_NE(start(o).message().find("is not a PEM file"), std::string::npos);
  o = ServerOptions();
  o.listen_address = "203.0.113.1:1";  // not an address of this machine
  EXPECT_EQ(start(o).code(), absl::StatusCode::kUnavailable);
  o = ServerOptions();
  o.metrics_listen_address = "localhost:99999";
  EXPECT_EQ(start(o).code(), absl::StatusCode::kInvalidArgument);
  o = ServerOptions();
  o.max_receive_message_bytes = 0;
  EXPECT_EQ(start(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, ShutdownDrainsOnceWithHealthNotServing) {
  Start(ServerOptions());
  auto channel = Channel();
  EXPECT_EQ(HealthOf(channel), "SERVING");
  int drains = 0;
  std::string health_while_draining;
  server_->OnDrain([&] {
    ++drains;
    health_while_draining = HealthOf(channel);
  });
  server_->Shutdown(absl::Seconds(1));
  server_->Shutdown(absl::Seconds(1));
  server_->Wait();
  EXPECT_EQ(drains, 1);
  EXPECT_EQ(health_while_draining, "NOT_SERVING");
  EXPECT_NE(GetJob(channel, "").error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace linearize::server
