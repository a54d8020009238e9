// Shared helpers of the conversion tests: a temporary directory, file
// reading, and running the Python checks of the exported directories with
// the project venv.
#pragma once

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/convert/fs_util.h"
#include "gtest/gtest.h"

namespace linearize::convert::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/convert_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The names in `dir` (without "." and ".."), sorted.
inline std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A deterministic text from a small vocabulary with some structure (word
// pairs repeat), so that there is something to learn.
inline std::string MakeText(int words, uint32_t seed) {
  static const char* kWords[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog",
                                 "ran", "to", "house", "big", "red", "blue", "tree", "sun"};
  std::mt19937 rng(seed);
  std::string s;
  for (int i = 0; i < words; ++i) {
    const int w = static_cast<int>(rng() % 16);
    s += kWords[w];
    s += (i % 12 == 11) ? ".\n" : " ";
    if (w % 3 == 0) s += std::string(kWords[(w + 1) % 16]) + " ";
  }
  return s;
}

// The project venv's interpreter, or "" when there is none.
inline std::string VenvPython() {
  const std::string python = std::string(LINEARIZE_SOURCE_DIR) + "/.venv/bin/python";
  struct stat st;
  return ::stat(python.c_str(), &st) == 0 ? python : std::string();
}

// Runs tests/unit/convert/check_hf_export.py with `args`; returns its exit
// status and puts its output in *output.
inline int RunHfCheck(const std::string& args, std::string* output) {
  const std::string cmd = "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 " + VenvPython() + " " +
                          std::string(LINEARIZE_SOURCE_DIR) +
                          "/tests/unit/convert/check_hf_export.py " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  output->clear();
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) output->append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace linearize::convert::testing
