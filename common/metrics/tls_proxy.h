// Terminates TLS (OpenSSL) for the metrics endpoint and forwards the
// plaintext to the HTTP server on a loopback port, so that the HTTP server
// needs no TLS of its own and certificate errors are checked before serving.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace linearize::metrics {

class TlsProxy {
 public:
  // Listens on host:port (host "" = every interface, port 0 = pick one) and
  // forwards each connection, after a TLS 1.2+ handshake with the PEM
  // certificate chain and key, to 127.0.0.1:backend_port. At most
  // `max_connections` are served at once; more wait in the listen backlog.
  static absl::StatusOr<std::unique_ptr<TlsProxy>> Start(const std::string& host, int port,
                                                         const std::string& cert_file,
                                                         const std::string& key_file,
                                                         int backend_port, int max_connections);
  ~TlsProxy();  // closes every connection and joins every thread

  int port() const { return port_; }

 private:
  TlsProxy() = default;
  void AcceptLoop();
  void Serve(int client_fd);

  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd that ends the accept loop
  int port_ = 0;
  int backend_port_ = 0;
  int max_connections_ = 0;
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable idle_;
  std::set<int> active_;  // client fds being served
};

}  // namespace linearize::metrics
