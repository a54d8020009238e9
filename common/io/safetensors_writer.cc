// WriteSafetensors: the layout the Python package produces (tensors ordered by
// element size then name so every tensor is naturally aligned, header padded
// with spaces to a multiple of 8 bytes), written to a temporary file that is
// renamed into place.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <set>

#include "absl/status/status.h"
#include "common/io/safetensors.h"
#include "common/io/str_util.h"
#include "nlohmann/json.hpp"

namespace linearize::io {
namespace {

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, internal::StrCat("cannot write ", path));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BuildHeader(const std::string& path,
                                        const std::vector<const TensorToWrite*>& order,
                                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = std::string(DTypeName(t->dtype));
    entry["shape"] = t->shape;
    entry["data_offsets"] = {offset, offset + t->data.size()};
    offset += t->data.size();
    header[t->name] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata not UTF-8
    return absl::InvalidArgumentError(
        internal::StrCat(path, ": tensor names and metadata must be UTF-8: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> names;
  std::vector<const TensorToWrite*> order;
  for (const TensorToWrite& t : tensors) {
    auto fail = [&](std::string_view what) {
      return absl::InvalidArgumentError(
          internal::StrCat(path, ": tensor \"", t.name, "\": ", what));
    };
    if (t.name.empty() || t.name == "__metadata__") return fail("reserved or empty name");
    if (!names.insert(t.name).second) return fail("name given twice");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return fail("negative dimension");
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) {
        return fail("shape overflows");
      }
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, DTypeSize(t.dtype), &nbytes) || nbytes != t.data.size()) {
      return fail(internal::StrCat("has ", t.data.size(), " bytes of data but its shape and dtype ",
                               DTypeName(t.dtype), " need ", numel, " elements"));
    }
    order.push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    size_t sa = DTypeSize(a->dtype), sb = DTypeSize(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  absl::StatusOr<std::string> header = BuildHeader(path, order, metadata);
  if (!header.ok()) return header.status();

  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return absl::ErrnoToStatus(errno, internal::StrCat("cannot create a file beside ", path));
  auto abandon = [&](absl::Status s) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  ::fchmod(fd, 0644);  // mkstemp makes it 0600

  uint8_t len_bytes[8];
  uint64_t len = header->size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(len >> (8 * i));
  absl::Status s = WriteAll(fd, len_bytes, 8, tmp);
  if (s.ok()) s = WriteAll(fd, header->data(), header->size(), tmp);
  for (const TensorToWrite* t : order) {
    if (!s.ok()) break;
    s = WriteAll(fd, t->data.data(), t->data.size(), tmp);
  }
  if (!s.ok()) return abandon(s);
  if (::fsync(fd) != 0) {
    return abandon(absl::ErrnoToStatus(errno, internal::StrCat("cannot sync ", tmp)));
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return absl::ErrnoToStatus(errno, internal::StrCat("cannot close ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return absl::ErrnoToStatus(err, internal::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace linearize::io
