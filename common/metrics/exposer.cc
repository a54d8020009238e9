#include "common/metrics/exposer.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/metrics/text_serializer.h"

namespace linearize::metrics {
namespace {

constexpr int kIdleTimeoutSeconds = 30;  // an idle connection is closed after this

struct ListenAddress {
  std::string host;  // IPv4 address; empty for every interface
  int port = 0;
};

// Parses "host:port", ":port" or "port".
absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& address) {
  const std::string field = "metrics listen address";
  if (address.empty()) {
    return absl::InvalidArgumentError(field + ": must not be empty (e.g. \"0.0.0.0:9090\")");
  }
  if (address.find('[') != std::string::npos ||
      std::count(address.begin(), address.end(), ':') > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": IPv6 is not supported, got \"", address, "\""));
  }
  std::string host;
  std::string port = address;
  if (size_t colon = address.rfind(':'); colon != std::string::npos) {
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  int port_number = -1;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || port_number < 0 ||
      port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": port must be a number in [0, 65535], got \"", address, "\""));
  }
  if (host == "localhost") host = "127.0.0.1";
  if (!host.empty()) {
    int parts = 0;
    bool ok = true;
    for (size_t start = 0; ok && start <= host.size(); ++parts) {
      size_t dot = host.find('.', start);
      if (dot == std::string::npos) dot = host.size();
      int octet = -1;
      auto [p, e] = std::from_chars(host.data() + start, host.data() + dot, octet);
      ok = dot > start && e == std::errc() && p == host.data() + dot && octet >= 0 && octet <= 255;
      start = dot + 1;
    }
    if (!ok || parts != 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": host must be an IPv4 address or \"localhost\", got \"", address, "\""));
    }
  }
  return ListenAddress{host, port_number};
}

absl::Status CheckReadable(const std::string& path, const std::string& field) {
  if (access(path.c_str(), R_OK) == 0) return absl::OkStatus();
  const int err = errno;
  std::string message = absl::StrCat(field, ": cannot read \"", path, "\": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES) return absl::PermissionDeniedError(message);
  return absl::InvalidArgumentError(message);
}

// Every collectable's families; families that share a name are merged so
// that each name gets one HELP/TYPE block (Prometheus rejects repeats).
std::vector<MetricFamily> CollectAll(const std::vector<std::shared_ptr<Collectable>>& sources) {
  std::vector<MetricFamily> out;
  std::map<std::string, size_t> index;
  for (const auto& source : sources) {
    for (MetricFamily& family : source->Collect()) {
      auto it = index.find(family.name);
      if (it == index.end()) {
        index.emplace(family.name, out.size());
        out.push_back(std::move(family));
      } else if (out[it->second].type == family.type) {
        auto& into = out[it->second].metric;
        into.insert(into.end(), std::make_move_iterator(family.metric.begin()),
                    std::make_move_iterator(family.metric.end()));
      }
      // A same-named family of another type is dropped: it cannot be
      // expressed in one exposition.
    }
  }
  return out;
}

constexpr char kPlainText[] = "text/plain; charset=utf-8";

MHD_Result Respond(MHD_Connection* conn, unsigned int code, const char* content_type,
                   const std::string& body) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  }
  const MHD_Result result = MHD_queue_response(conn, code, response);
  MHD_destroy_response(response);
  return result;
}

// libmicrohttpd's request callback; `cls` is the Exposer. It is called
// once with the headers, then for each piece of body, then once more.
// Errors are answered at once (libmicrohttpd then closes the connection
// instead of reading the body); GET and HEAD are answered on the last call,
// so that the connection can be kept alive. For HEAD, libmicrohttpd sends
// the headers only.
MHD_Result HandleRequest(void* cls, MHD_Connection* conn, const char* url, const char* method,
                         const char* /*version*/, const char* /*upload_data*/,
                         size_t* upload_data_size, void** req_cls) {
  const std::string path = url;
  if (path != "/metrics" && path != "/healthz") {
    return Respond(conn, MHD_HTTP_NOT_FOUND, kPlainText, "not found\n");
  }
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    return Respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, kPlainText,
                   "only GET and HEAD are allowed\n");
  }
  static int headers_seen;
  if (*req_cls == nullptr) {
    *req_cls = &headers_seen;
    return MHD_YES;
  }
  if (*upload_data_size != 0) {  // a GET with a body: ignore it
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (path == "/healthz") return Respond(conn, MHD_HTTP_OK, kPlainText, "ok\n");
  return Respond(conn, MHD_HTTP_OK, std::string(kTextContentType).c_str(),
                 static_cast<const Exposer*>(cls)->Scrape());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Exposer>> Exposer::Create(const ExposerOptions& options) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (tls && (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return absl::InvalidArgumentError(
        "metrics TLS: both a certificate file and a key file are needed, got only one");
  }
  if (options.num_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics num_threads: must be at least 1, got ", options.num_threads));
  }
  auto address = ParseListenAddress(options.listen_address);
  if (!address.ok()) return address.status();
  if (tls) {
    if (auto s = CheckReadable(options.tls_cert_file, "metrics TLS certificate"); !s.ok()) return s;
    if (auto s = CheckReadable(options.tls_key_file, "metrics TLS key"); !s.ok()) return s;
  }

  std::unique_ptr<Exposer> exposer(new Exposer());
  exposer->tls_ = tls;
  // With TLS, the HTTP server listens on loopback only and the proxy takes
  // the requested address.
  sockaddr_in bind_address{};
  bind_address.sin_family = AF_INET;
  bind_address.sin_port = htons(static_cast<uint16_t>(tls ? 0 : address->port));
  bind_address.sin_addr.s_addr = htonl(tls ? INADDR_LOOPBACK : INADDR_ANY);
  if (!tls && !address->host.empty()) {
    inet_pton(AF_INET, address->host.c_str(), &bind_address.sin_addr);  // checked above
  }
  // Idle (kept-alive) connections cost no thread: each thread polls many.
  // A pool of one is no pool, and libmicrohttpd warns about it.
  const unsigned int pool_size = options.num_threads > 1 ? options.num_threads : 0;
  // The port argument only names the port in libmicrohttpd's messages.
  exposer->daemon_ = MHD_start_daemon(
      MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, ntohs(bind_address.sin_port),
      /*apc=*/nullptr, /*apc_cls=*/nullptr, &HandleRequest, exposer.get(),
      MHD_OPTION_EXTERNAL_LOGGER, &Exposer::LogMessage, exposer.get(),  // first: sees all
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&bind_address),
      MHD_OPTION_THREAD_POOL_SIZE, pool_size,
      // System-default stacks: LibTorch/CUDA's large static TLS does not fit in small ones.
      MHD_OPTION_THREAD_STACK_SIZE, static_cast<size_t>(0),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned int>(kIdleTimeoutSeconds),
      MHD_OPTION_END);
  if (exposer->daemon_ == nullptr) {
    std::lock_guard<std::mutex> lock(exposer->mu_);
    std::string why = exposer->start_error_.empty() ? "" : ": " + exposer->start_error_;
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot serve on \"", options.listen_address, "\"", why));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(exposer->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  exposer->port_ = info != nullptr ? info->port : 0;
  if (exposer->port_ <= 0) {
    return absl::InternalError("metrics: libmicrohttpd reports no listening port");
  }
  if (tls) {
    auto proxy = TlsProxy::Start(address->host, address->port, options.tls_cert_file,
                                 options.tls_key_file, exposer->port_, 4 * options.num_threads);
    if (!proxy.ok()) return proxy.status();
    exposer->tls_proxy_ = std::move(*proxy);
  }
  return exposer;
}

Exposer::~Exposer() {
  tls_proxy_.reset();  // before the backend it forwards to
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

void Exposer::LogMessage(void* self, const char* format, va_list args) {
  // libmicrohttpd reports start-up failures (port in use, ...) here; keep
  // the first message for the error, and keep stderr quiet.
  char buf[512];
  std::vsnprintf(buf, sizeof(buf), format, args);
  std::string message = buf;
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  auto* exposer = static_cast<Exposer*>(self);
  std::lock_guard<std::mutex> lock(exposer->mu_);
  if (exposer->start_error_.empty()) exposer->start_error_ = std::move(message);
}

void Exposer::RegisterCollectable(const std::weak_ptr<Collectable>& collectable) {
  std::lock_guard<std::mutex> lock(mu_);
  collectables_.push_back(collectable);
}

void Exposer::RemoveCollectable(const std::weak_ptr<Collectable>& collectable) {
  std::lock_guard<std::mutex> lock(mu_);
  auto target = collectable.lock();
  std::erase_if(collectables_, [&](const std::weak_ptr<Collectable>& c) {
    auto p = c.lock();
    return p == nullptr || p == target;
  });
}

std::vector<int> Exposer::GetListeningPorts() const {
  return {tls_proxy_ ? tls_proxy_->port() : port_};
}

std::string Exposer::Scrape() const {
  std::vector<std::shared_ptr<Collectable>> sources;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : collectables_) {
      if (auto p = c.lock()) sources.push_back(std::move(p));
    }
  }
  return TextSerializer().Serialize(CollectAll(sources));
}

}  // namespace linearize::metrics
