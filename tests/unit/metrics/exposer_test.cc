// The /metrics endpoint over real HTTP and HTTPS on loopback.
#include "common/metrics/exposer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/metrics/process_collector.h"
#include "common/metrics/registry.h"
#include "gtest/gtest.h"

namespace linearize::metrics {
namespace {

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends one HTTP/1.0 request and returns the whole response.
std::string Http(int port, const std::string& method, const std::string& path) {
  int fd = Connect(port);
  if (fd < 0) return "";
  std::string request = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) < 0) return "";
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  return response;
}

std::string Body(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

TEST(ExposerTest, ServesMetricsOnAPickedPort) {
  auto registry = std::make_shared<Registry>();
  BuildCounter()
      .Name("requests_total")
      .Help("r")
      .Register(*registry)
      .Add({{"a", "b"}})
      .Increment(7);
  auto exposer = Exposer::Create({.listen_address = "127.0.0.1:0"});
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  (*exposer)->RegisterCollectable(registry);
  ASSERT_EQ((*exposer)->GetListeningPorts().size(), 1u);
  const int port = (*exposer)->GetListeningPorts()[0];
  EXPECT_GT(port, 0);

  const std::string response = Http(port, "GET", "/metrics");
  EXPECT_NE(response.find("HTTP/1.1 200 OK"), std::string::npos) << response;
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            std::string::npos);
  EXPECT_EQ(Body(response),
            "# HELP requests_total r\n# TYPE requests_total counter\n"
            "requests_total{a=\"b\"} 7\n");

  EXPECT_EQ(Body(Http(port, "GET", "/healthz")), "ok\n");
  EXPECT_NE(Http(port, "GET", "/nothing").find(" 404 "), std::string::npos);
  EXPECT_NE(Http(port, "POST", "/metrics").find(" 405 "), std::string::npos);
  const std::string head = Http(port, "HEAD", "/metrics");
  EXPECT_NE(head.find(" 200 "), std::string::npos);
  EXPECT_EQ(Body(head), "");
}

TEST(ExposerTest, MergesSameNamedFamiliesAndSkipsDeadCollectables) {
  auto a = std::make_shared<Registry>();
  auto b = std::make_shared<Registry>();
  BuildGauge().Name("shared").Help("s").Register(*a).Add({{"from", "a"}}).Set(1);
  BuildGauge().Name("shared").Help("s").Register(*b).Add({{"from", "b"}}).Set(2);
  auto exposer = Exposer::Create({.listen_address = "127.0.0.1:0"});
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  (*exposer)->RegisterCollectable(a);
  (*exposer)->RegisterCollectable(b);
  EXPECT_EQ((*exposer)->Scrape(),
            "# HELP shared s\n# TYPE shared gauge\nshared{from=\"a\"} 1\nshared{from=\"b\"} 2\n");
  b.reset();
  EXPECT_EQ((*exposer)->Scrape(), "# HELP shared s\n# TYPE shared gauge\nshared{from=\"a\"} 1\n");
  (*exposer)->RemoveCollectable(a);
  EXPECT_EQ((*exposer)->Scrape(), "");
}

TEST(ExposerTest, ProcessCollectorReportsThisProcess) {
  auto exposer = Exposer::Create({.listen_address = "127.0.0.1:0"});
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  (*exposer)->RegisterCollectable(std::make_shared<ProcessCollector>());
  auto collector = std::make_shared<ProcessCollector>();
  (*exposer)->RegisterCollectable(collector);
  const std::string text = (*exposer)->Scrape();
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_start_time_seconds", "process_open_fds", "process_max_fds"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + name), std::string::npos) << name;
  }
  for (const MetricFamily& f : collector->Collect()) {
    ASSERT_EQ(f.metric.size(), 1u);
    const double v =
        f.type == MetricType::kCounter ? f.metric[0].counter.value : f.metric[0].gauge.value;
    // A fresh process may not have used a whole clock tick of CPU yet.
    if (f.name == "process_cpu_seconds_total") {
      EXPECT_GE(v, 0);
    } else {
      EXPECT_GT(v, 0) << f.name;
    }
  }
}

TEST(ExposerTest, RejectsBadAddressesAndBusyPorts) {
  for (const char* bad : {"", "127.0.0.1:x", "127.0.0.1:70000", "[::1]:0", "1.2.3:0",
                          "example.com:80", "127.0.0.1:-1"}) {
    auto e = Exposer::Create({.listen_address = bad});
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(e.status().message().find("metrics listen address"), std::string::npos);
  }
  auto first = Exposer::Create({.listen_address = "127.0.0.1:0"});
  ASSERT_TRUE(first.ok());
  const int port = (*first)->GetListeningPorts()[0];
  auto second = Exposer::Create({.listen_address = "127.0.0.1:" + std::to_string(port)});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(std::to_string(port)), std::string::npos)
      << second.status();
}

TEST(ExposerTest, RejectsIncompleteTlsSettings) {
  auto only_cert = Exposer::Create({.listen_address = "127.0.0.1:0", .tls_cert_file = "x.pem"});
  EXPECT_EQ(only_cert.status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = Exposer::Create({.listen_address = "127.0.0.1:0",
                                  .tls_cert_file = "/nonexistent.pem",
                                  .tls_key_file = "/nonexistent.key"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent.pem"), std::string::npos);
}

class ExposerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/exposer_tls_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "
        "/CN=127.0.0.1 "
        "-addext subjectAltName=IP:127.0.0.1 -keyout " +
        dir_ + "/key.pem -out " + dir_ + "/cert.pem 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl failed";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(ExposerTlsTest, ServesHttpsThatVerifiesAgainstTheCertificate) {
  auto registry = std::make_shared<Registry>();
  BuildGauge().Name("up_tls").Help("t").Register(*registry).Add({}).Set(1);
  auto exposer = Exposer::Create({.listen_address = "127.0.0.1:0",
                                  .tls_cert_file = dir_ + "/cert.pem",
                                  .tls_key_file = dir_ + "/key.pem"});
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  EXPECT_TRUE((*exposer)->tls());
  (*exposer)->RegisterCollectable(registry);
  const int port = (*exposer)->GetListeningPorts()[0];

  // Plain HTTP to the TLS port gets no metrics.
  EXPECT_EQ(Http(port, "GET", "/metrics").find("up_tls"), std::string::npos);

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_EQ(SSL_CTX_load_verify_locations(ctx, (dir_ + "/cert.pem").c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set1_host(ssl, "127.0.0.1");
  const int fd = Connect(port);
  ASSERT_GE(fd, 0);
  SSL_set_fd(ssl, fd);
  ASSERT_EQ(SSL_connect(ssl), 1) << ERR_error_string(ERR_get_error(), nullptr);
  EXPECT_EQ(SSL_get_verify_result(ssl), X509_V_OK);
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_GT(SSL_write(ssl, request.data(), static_cast<int>(request.size())), 0);
  std::string response;
  char buf[4096];
  for (int n; (n = SSL_read(ssl, buf, sizeof(buf))) > 0;) response.append(buf, n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  EXPECT_EQ(Body(response), "# HELP up_tls t\n# TYPE up_tls gauge\nup_tls 1\n") << response;
}

// Stopping closes open TLS connections; OpenSSL's close_notify then goes to
// a shut-down socket, which must not raise SIGPIPE (it would kill us).
TEST_F(ExposerTlsTest, StopsWithAnOpenConnection) {
  auto exposer = Exposer::Create({.listen_address = "127.0.0.1:0",
                                  .tls_cert_file = dir_ + "/cert.pem",
                                  .tls_key_file = dir_ + "/key.pem"});
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  const int fd = Connect((*exposer)->GetListeningPorts()[0]);
  ASSERT_GE(fd, 0);
  SSL_set_fd(ssl, fd);
  ASSERT_EQ(SSL_connect(ssl), 1) << ERR_error_string(ERR_get_error(), nullptr);
  exposer->reset();
  char buf[64];
  EXPECT_LE(SSL_read(ssl, buf, sizeof(buf)), 0);  // the server closed the connection
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
}

TEST_F(ExposerTlsTest, MismatchedKeyIsRejectedWithAReason) {
  ASSERT_EQ(std::system(("openssl ecparam -genkey -name prime256v1 -noout -out " + dir_ +
                         "/other.pem 2>/dev/null")
                            .c_str()),
            0);
  auto exposer = Exposer::Create({.listen_address = "127.0.0.1:0",
                                  .tls_cert_file = dir_ + "/cert.pem",
                                  .tls_key_file = dir_ + "/other.pem"});
  EXPECT_EQ(exposer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(exposer.status().message().find("mismatch"), std::string::npos) << exposer.status();
}

}  // namespace
}  // namespace linearize::metrics
