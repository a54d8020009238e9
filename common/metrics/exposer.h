// Serves GET /metrics (Prometheus text format 0.0.4) and GET /healthz over
// HTTP with GNU libmicrohttpd, or over HTTPS when a certificate is given:
// then the HTTP server listens on a loopback port behind a TlsProxy.
//
//   auto exposer = Exposer::Create({.listen_address = "0.0.0.0:9090"});
//   (*exposer)->RegisterCollectable(registry);
#pragma once

#include <cstdarg>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/collectable.h"
#include "common/metrics/tls_proxy.h"

struct MHD_Daemon;

namespace linearize::metrics {

struct ExposerOptions {
  // "host:port" (IPv4 address or name), ":port" or "port" for every
  // interface. Port 0 picks a free port; GetListeningPorts says which.
  // IPv6 is not supported.
  std::string listen_address{};
  // PEM files; both set -> HTTPS (TLS 1.2 or newer) on the port.
  std::string tls_cert_file{};
  std::string tls_key_file{};
  // Threads that serve requests (each multiplexes many connections);
  // over TLS, 4x that many connections are served at once.
  int num_threads = 4;
};

class Exposer {
 public:
  // Binds and starts serving. Errors: INVALID_ARGUMENT (malformed
  // address, only one of cert/key, unusable certificate or key),
  // UNAVAILABLE (cannot listen), NOT_FOUND / PERMISSION_DENIED
  // (certificate files).
  static absl::StatusOr<std::unique_ptr<Exposer>> Create(const ExposerOptions& options);
  ~Exposer();  // stops serving; in-flight scrapes finish first

  // Scrapes collect every registered collectable that is still alive;
  // families of the same name from several collectables are merged.
  void RegisterCollectable(const std::weak_ptr<Collectable>& collectable);
  void RemoveCollectable(const std::weak_ptr<Collectable>& collectable);

  std::vector<int> GetListeningPorts() const;
  bool tls() const { return tls_; }

  // What a scrape of /metrics returns now (also used by tests).
  std::string Scrape() const;

 private:
  Exposer() = default;
  // libmicrohttpd's logger; keeps the first message (start-up errors).
  static void LogMessage(void* self, const char* format, va_list args);

  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;  // the HTTP server's (the proxy's port is tls_proxy_->port())
  bool tls_ = false;
  std::unique_ptr<TlsProxy> tls_proxy_;
  mutable std::mutex mu_;
  std::string start_error_;  // guarded by mu_
  std::vector<std::weak_ptr<Collectable>> collectables_;
};

}  // namespace linearize::metrics
