#include "services/scheduler/page_token.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace linearize::scheduler {

std::string FilterFingerprint(const google::protobuf::Message& filters) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.SetSerializationDeterministic(true);
    filters.SerializeToCodedStream(&out);
  }
  // FNV-1a, 64 bits: stable across processes and replicas (absl::Hash is not).
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrCat(absl::Hex(h, absl::kZeroPad16));
}

std::string EncodePageToken(std::string_view kind, std::string_view fingerprint,
                            const std::vector<std::string>& position) {
  // Position fields are ids and integers: they contain no '|'.
  std::string plain = absl::StrCat(std::string(kind), "|", std::string(fingerprint), "|", absl::StrJoin(position, "|"));
  return absl::WebSafeBase64Escape(plain);
}

absl::StatusOr<std::vector<std::string>> DecodePageToken(std::string_view token,
                                                         std::string_view kind,
                                                         std::string_view fingerprint,
                                                         size_t position_fields) {
  std::string plain;
  if (token.size() > 1024 || !absl::WebSafeBase64Unescape(std::string(token), &plain)) {
    return absl::InvalidArgumentError("page_token: malformed; pass the next_page_token of the "
                                      "previous response unchanged");
  }
  std::vector<std::string> parts = absl::StrSplit(plain, '|');
  if (parts.size() != position_fields + 2 || parts[0] != kind) {
    return absl::InvalidArgumentError("page_token: malformed; pass the next_page_token of the "
                                      "previous response unchanged");
  }
  if (parts[1] != fingerprint) {
    return absl::InvalidArgumentError(
        "page_token: was issued for a request with different filters; repeat the filters of "
        "the first page or start again without a page_token");
  }
  return std::vector<std::string>(parts.begin() + 2, parts.end());
}

}  // namespace linearize::scheduler
