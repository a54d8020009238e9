#include "services/worker/artifact_files.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/convert/fs_util.h"

namespace linearize::worker {
namespace {

absl::StatusOr<std::vector<std::string>> List(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return convert::Errno("listing", dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Hard link, or a copy across file systems (or where links are refused).
absl::Status LinkOrCopy(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return absl::OkStatus();
  if (errno == EEXIST) return convert::Errno("creating", to);
  return convert::CopyFile(from, to);
}

}  // namespace

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status CopyTree(const std::string& from, const std::string& to) {
  struct stat st;
  if (::stat(from.c_str(), &st) != 0) return convert::Errno("reading", from);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(from, " is not a directory"));
  }
  if (Exists(to)) return absl::AlreadyExistsError(absl::StrCat(to, " already exists"));
  if (absl::Status s = convert::MakeDirs(to); !s.ok()) return s;
  absl::StatusOr<std::vector<std::string>> names = List(from);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string src = from + "/" + name, dst = to + "/" + name;
    if (::stat(src.c_str(), &st) != 0) return convert::Errno("reading", src);
    absl::Status s = S_ISDIR(st.st_mode) ? CopyTree(src, dst)
                     : S_ISREG(st.st_mode) ? LinkOrCopy(src, dst)
                                           : absl::OkStatus();  // sockets, fifos: not ours
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CopyModel(const std::string& from, const std::string& to,
                       const std::function<void(const std::string& name)>& on_file) {
  if (!Exists(from + "/config.json")) {
    return absl::FailedPreconditionError(
        absl::StrCat(from, " holds no config.json: not an exported model"));
  }
  if (absl::Status s = convert::MakeDirs(to); !s.ok()) return s;
  absl::StatusOr<std::vector<std::string>> names = List(from);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string src = from + "/" + name, dst = to + "/" + name;
    struct stat st;
    if (::stat(src.c_str(), &st) != 0) return convert::Errno("reading", src);
    absl::Status s;
    if (S_ISREG(st.st_mode)) {
      s = LinkOrCopy(src, dst);
    } else if (S_ISDIR(st.st_mode) && name == "adapter") {
      s = CopyTree(src, dst);
    } else {
      continue;  // checkpoint/ and staging folders are not part of the model
    }
    if (!s.ok()) return s;
    if (on_file) on_file(name);
  }
  return absl::OkStatus();
}

}  // namespace linearize::worker
