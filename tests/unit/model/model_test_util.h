// Shared helpers for the model and runtime tests: fixture paths and the
// transformers references written by scripts/fixtures/make_model_fixtures.py.
#pragma once

#include <ATen/ATen.h>

#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/io/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace linearize::testing {

inline std::string FixturePath(const std::string& relative) {
  return std::string(LINEARIZE_FIXTURES_DIR) + "/" + relative;
}

inline std::string ModelDir(const std::string& variant) {
  return FixturePath("models/" + variant);
}

// Temporary directories and file copies through POSIX and streams: in
// binaries linked with the torch wheel's libtorch.so, std::filesystem's
// remove_all/copy/directory iterators resolve to incompatible copies that
// libtorch exports and crash.
inline std::string MakeTempDir(const std::string& tag) {
  std::string pattern = ::testing::TempDir() + "/" + tag + "_XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
  return pattern;
}

inline void RemoveTree(const std::string& dir) {
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

inline void CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
  EXPECT_TRUE(in.good() && out.good()) << from << " -> " << to;
}

inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

// A tensor of a safetensors file, copied into an ATen tensor.
inline at::Tensor ReadTensor(const std::string& path, const std::string& name) {
  auto file = io::SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return {};
  const io::TensorView* view = (*file)->Find(name);
  EXPECT_NE(view, nullptr) << name << " not in " << path;
  if (view == nullptr) return {};
  at::ScalarType type = view->dtype == io::DType::kF32 ? at::kFloat : at::kLong;
  EXPECT_TRUE(view->dtype == io::DType::kF32 || view->dtype == io::DType::kI64);
  at::Tensor t = at::empty(view->shape, type);
  std::memcpy(t.data_ptr(), view->data.data(), view->data.size());
  return t;
}

// The reference of one tiny fixture model.
struct Reference {
  std::vector<int64_t> input_ids;
  at::Tensor logits;  // [T, V]
  std::vector<int64_t> prompt_ids;
  std::vector<int64_t> greedy_ids;
  nlohmann::json json;  // all of reference.json (texts where there is a tokenizer)
};

inline Reference ReadReference(const std::string& variant) {
  const nlohmann::json j = ReadJson(ModelDir(variant) + "/reference.json");
  Reference r;
  r.input_ids = j.at("input_ids").get<std::vector<int64_t>>();
  r.prompt_ids = j.at("prompt_ids").get<std::vector<int64_t>>();
  r.greedy_ids = j.at("greedy_ids").get<std::vector<int64_t>>();
  r.json = j;
  r.logits = ReadTensor(ModelDir(variant) + "/" + j.at("logits_file").get<std::string>(),
                        j.at("logits_tensor").get<std::string>());
  return r;
}

inline at::Tensor Ids(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::kLong).unsqueeze(0);
}

// max |a - b| / max |b|: the tolerance measure the fixtures are held to.
inline double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}

}  // namespace linearize::testing
