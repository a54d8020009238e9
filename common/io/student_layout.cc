#include "common/io/student_layout.h"

#include <sys/stat.h>

namespace linearize::io {

std::optional<std::string> StudentAdapterDir(const std::string& dir) {
  for (const std::string& d : {dir + "/adapter", dir + "/delta", dir}) {
    struct stat st;
    if (::stat((d + "/adapter_model.safetensors").c_str(), &st) == 0) return d;
  }
  return std::nullopt;
}

}  // namespace linearize::io
