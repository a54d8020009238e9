// SHA-256 digests (OpenSSL's libcrypto), for checksums and fingerprints.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace linearize::io {

// Feeds data in pieces; Finish may be called once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  std::array<uint8_t, 32> Finish();

 private:
  void* ctx_;  // EVP_MD_CTX
};

std::array<uint8_t, 32> Sha256Of(std::string_view data);
// "sha256:<64 lowercase hex digits>".
std::string Sha256Label(std::span<const uint8_t, 32> digest);
inline std::string Sha256Label(std::string_view data) { return Sha256Label(Sha256Of(data)); }
// The digest of a file's contents, read in blocks; NOT_FOUND / INTERNAL naming the path.
absl::StatusOr<std::array<uint8_t, 32>> Sha256OfFile(const std::string& path);

}  // namespace linearize::io
