// TLS credentials from PEM files, for servers and for their clients.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace linearize::server {

struct TlsFiles {
  std::string cert_file{};  // PEM certificate chain
  std::string key_file{};   // PEM private key
  // Server: CA that client certificates must chain to; set -> mutual TLS
  // (clients without a valid certificate are refused). Client: CA that the
  // server's certificate must chain to (empty: the system roots).
  std::string ca_file{};
};

// A file's contents, or NOT_FOUND / PERMISSION_DENIED / INVALID_ARGUMENT
// (empty, over 1 MiB, no "-----BEGIN") naming `field` and the path.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& field);

// TLS when cert_file and key_file are set (mTLS when ca_file is too),
// plaintext when all three are empty. INVALID_ARGUMENT for any other mix.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

// TLS when ca_file is set (with a client certificate when cert_file and
// key_file are too), plaintext when all three are empty.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files);

}  // namespace linearize::server
