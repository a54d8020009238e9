// write_tiny_model DIR [softmax|lolcats|lizard|linear]: writes the tiny random
// checkpoint the inference unit tests use (tests/unit/inference/tiny_models.h)
// into DIR, for integration tests that start real server processes.
#include <iostream>

#include "tests/unit/inference/tiny_models.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: write_tiny_model DIR softmax|lolcats|lizard|linear\n";
    return 2;
  }
  std::optional<linearize::model::Recipe> recipe;
  if (std::string(argv[2]) != "softmax") {
    auto r = linearize::model::ParseRecipe(argv[2]);
    if (!r.ok()) {
      std::cerr << r.status().message() << "\n";
      return 2;
    }
    recipe = *r;
  }
  // Failures print through gtest's macros; the server's load then fails loudly.
  linearize::testing::WriteTinyModel(argv[1], recipe);
  return 0;
}
