#include "common/metrics/tls_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace linearize::metrics {
namespace {

constexpr int kHandshakeTimeoutSeconds = 10;
constexpr int kIdleTimeoutMs = 30'000;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

void SetTimeouts(int fd, int seconds) {
  timeval tv{};
  tv.tv_sec = seconds;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool SslWriteAll(SSL* ssl, const char* data, size_t size) {
  while (size > 0) {
    const int n = SSL_write(ssl, data, static_cast<int>(size));
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsProxy>> TlsProxy::Start(const std::string& host, int port,
                                                          const std::string& cert_file,
                                                          const std::string& key_file,
                                                          int backend_port, int max_connections) {
  std::unique_ptr<TlsProxy> proxy(new TlsProxy());
  proxy->backend_port_ = backend_port;
  proxy->max_connections_ = max_connections;

  proxy->ctx_ = SSL_CTX_new(TLS_server_method());
  if (proxy->ctx_ == nullptr) return absl::UnavailableError("metrics TLS: " + OpenSslError());
  SSL_CTX_set_min_proto_version(proxy->ctx_, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(proxy->ctx_, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics TLS certificate: \"", cert_file,
                     "\" is not a PEM certificate chain: ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(proxy->ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics TLS key: \"", key_file,
                     "\" is not a PEM private key for the certificate: ", OpenSslError()));
  }
  if (SSL_CTX_check_private_key(proxy->ctx_) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics TLS key: \"", key_file, "\" does not match the certificate \"", cert_file, "\""));
  }

  proxy->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (proxy->listen_fd_ < 0) return absl::UnavailableError("metrics: socket() failed");
  const int one = 1;
  setsockopt(proxy->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (!host.empty() && inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address: bad host \"", host, "\""));
  }
  if (bind(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(proxy->listen_fd_, 64) != 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ",
                                               host.empty() ? "*" : host, ":", port, ": ",
                                               std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  getsockname(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  proxy->port_ = ntohs(addr.sin_port);
  proxy->wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (proxy->wake_fd_ < 0) return absl::UnavailableError("metrics: eventfd() failed");
  proxy->accept_thread_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

TlsProxy::~TlsProxy() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_.store(true);
    idle_.notify_all();
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Wake every connection's poll/read; each thread closes its own fd.
    for (int fd : active_) shutdown(fd, SHUT_RDWR);
    idle_.wait(lock, [this] { return active_.empty(); });
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

void TlsProxy::AcceptLoop() {
  while (!stopping_.load()) {
    {
      // At capacity, leave new connections in the kernel's backlog.
      std::unique_lock<std::mutex> lock(mu_);
      idle_.wait(lock, [this] {
        return stopping_.load() || static_cast<int>(active_.size()) < max_connections_;
      });
    }
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_.load()) {
      close(client);
      continue;
    }
    active_.insert(client);
    std::thread([this, client] { Serve(client); }).detach();
  }
}

void TlsProxy::Serve(int client_fd) {
  // OpenSSL writes to the client with write(), which raises SIGPIPE once
  // the client is gone (or after shutdown() in ~TlsProxy); blocked in this
  // thread, the write fails with EPIPE instead of killing the process.
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, nullptr);
  SetTimeouts(client_fd, kHandshakeTimeoutSeconds);
  SSL* ssl = SSL_new(ctx_);
  int backend = -1;
  if (ssl != nullptr && SSL_set_fd(ssl, client_fd) == 1 && SSL_accept(ssl) == 1) {
    backend = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(backend_port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (backend >= 0 && connect(backend, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      char buf[16384];
      bool open = true;
      while (open && !stopping_.load()) {
        // Bytes OpenSSL already decrypted are not visible to poll().
        if (SSL_pending(ssl) == 0) {
          pollfd fds[2] = {{client_fd, POLLIN, 0}, {backend, POLLIN, 0}};
          const int ready = poll(fds, 2, kIdleTimeoutMs);
          if (ready == 0) break;  // idle
          if (ready < 0) {
            if (errno == EINTR) continue;
            break;
          }
          if (fds[1].revents != 0) {
            const ssize_t n = recv(backend, buf, sizeof(buf), 0);
            if (n <= 0 || !SslWriteAll(ssl, buf, static_cast<size_t>(n))) break;
          }
          if (fds[0].revents == 0) continue;
        }
        const int n = SSL_read(ssl, buf, sizeof(buf));
        if (n <= 0) {
          const int err = SSL_get_error(ssl, n);
          open = err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
          continue;
        }
        open = SendAll(backend, buf, static_cast<size_t>(n));
      }
    }
  }
  if (ssl != nullptr) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
  if (backend >= 0) close(backend);
  std::lock_guard<std::mutex> lock(mu_);
  close(client_fd);
  active_.erase(client_fd);
  idle_.notify_all();
}

}  // namespace linearize::metrics
