// The data pipeline: plain text and JSONL (text or chat messages), packed
// into sequences, split deterministically.
#include "common/convert/data.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "common/convert/fs_util.h"

namespace linearize::convert {
namespace {

const std::string kTeacher = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled";

TEST(ConvertData, PacksTextAndChatJsonlAndSplitsDeterministically) {
  char tmpl[] = "/tmp/convert_data_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::string text;
  for (int i = 0; i < 40; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  std::ofstream(dir + "/a.txt") << text;
  // (The chat line comes first: the stream's tail shorter than a sequence is dropped.)
  std::ofstream(dir + "/b.jsonl")
      << R"({"messages": [{"role": "user", "content": "Hello there"}, )"
      << R"({"role": "assistant", "content": "General Kenobi"}]})" << "\n\n"
      << "{\"text\": \"" << text << "\"}\n";
  auto teacher = model::LoadModel(kTeacher);
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  DataOptions o;
  o.files = {dir + "/a.txt", dir + "/b.jsonl"};
  o.seq_len = 32;
  o.validation_fraction = 0.2;
  auto a = BuildTokenData(*teacher, o);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = BuildTokenData(*teacher, o);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(at::equal(a->train, b->train));
  EXPECT_TRUE(at::equal(a->validation, b->validation));
  EXPECT_EQ(a->train.size(1), 32);
  const int64_t n = a->train.size(0) + a->validation.size(0);
  EXPECT_GE(n, 10);
  EXPECT_EQ(a->validation.size(0), std::llround(0.2 * static_cast<double>(n)));
  // The chat turn was rendered with the model's template (its special tokens
  // appear in the stream), and the text encodes back.
  const at::Tensor all = at::cat({a->train, a->validation}).flatten();
  const std::vector<int32_t> ids(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
  const std::string decoded = teacher->tokenizer->Decode(ids);
  EXPECT_NE(decoded.find("quick brown fox"), std::string::npos);
  const size_t kenobi = decoded.find("General Kenobi");
  ASSERT_NE(kenobi, std::string::npos);
  EXPECT_NE(decoded.rfind("assistant", kenobi), std::string::npos) << decoded.substr(kenobi - 80);
  o.seed = 9;  // another seed, another split
  auto c = BuildTokenData(*teacher, o);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(at::equal(a->validation, c->validation));
  (void)RemoveTree(dir);
}

}  // namespace
}  // namespace linearize::convert
