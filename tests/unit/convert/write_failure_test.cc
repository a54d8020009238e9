// Writes that fail as on a full disk (simulated with a file size limit,
// RLIMIT_FSIZE, which makes write() fail with EFBIG): a file written
// atomically keeps its previous contents, a failed checkpoint leaves the
// previous checkpoint to resume from, a failed export leaves the previous
// model files; no partial files are left behind and errors name the file.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <memory>
#include <random>

#include "common/convert/fs_util.h"
#include "common/convert/pipeline.h"
#include "common/model/load.h"
#include "nlohmann/json.hpp"
#include "tests/unit/convert/test_util.h"

namespace linearize::convert {
namespace {

using testing::Slurp;
using testing::ListDir;
using testing::TempDir;
using testing::WriteText;

// Lowers this process's file size limit while it lives.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);  // fail the write instead of killing the process
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &r), 0);
  }
  ~FileSizeLimit() { ::setrlimit(RLIMIT_FSIZE, &saved_); }

 private:
  rlimit saved_;
};

TEST(WriteFailure, AtomicWriteKeepsThePreviousContentsAndNamesTheFile) {
  TempDir dir;
  const std::string path = dir.path() + "/state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "previous").ok());
  absl::Status s;
  {
    FileSizeLimit limit(100);
    s = WriteFileAtomic(path, std::string(5000, 'x'));
  }
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  std::printf("error: %s\n", s.ToString().c_str());
  EXPECT_EQ(Slurp(path), "previous");
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"state.json"});
  EXPECT_FALSE(WriteFileAtomic(dir.path() + "/missing/x.json", "x").ok());
}

std::string MakeText(int words) {
  static const char* kWords[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog"};
  std::mt19937 rng(5);
  std::string s;
  for (int i = 0; i < words; ++i) s += std::string(kWords[rng() % 8]) + (i % 10 == 9 ? ".\n" : " ");
  return s;
}

ConvertOptions Options(const TempDir& dir) {
  ConvertOptions o;
  o.teacher = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled.gguf";
  o.attention = model::DefaultLinearAttentionConfig(model::Recipe::kLolcats);
  o.attention.window = 8;
  o.attention.feature_dim = 8;
  o.data.seq_len = 32;
  o.data.validation_fraction = 0.2;
  WriteText(dir.path() + "/train.txt", MakeText(1200));
  o.data.files = {dir.path() + "/train.txt"};
  o.batch_size = 2;
  o.tokens = 2 * 6 * 2 * 32;
  o.stage1.eval_every = 3;
  o.stage2.eval_every = 3;
  o.checkpoint_every = 2;
  o.out_dir = dir.path() + "/out";
  return o;
}

TEST(WriteFailure, FailedCheckpointKeepsThePreviousOneToResumeFrom) {
  TempDir dir;
  ConvertOptions o = Options(dir);
  std::unique_ptr<FileSizeLimit> limit;
  std::string state_before;
  auto r = Convert(o, [&](const ProgressEvent& e) {
    // After the checkpoint of step 2 of stage 2, the disk "fills up".
    if (e.stage == "finetune" && e.step == 3) {
      state_before = Slurp(o.out_dir + "/checkpoint/state.json");
      limit = std::make_unique<FileSizeLimit>(2048);
    }
    return true;
  });
  limit.reset();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensors.safetensors"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("previous one is kept"), std::string::npos) << r.status();
  std::printf("error: %s\n", r.status().ToString().c_str());
  ASSERT_FALSE(state_before.empty());
  EXPECT_EQ(Slurp(o.out_dir + "/checkpoint/state.json"), state_before);
  EXPECT_EQ(nlohmann::json::parse(state_before)["step"], 2);
  EXPECT_EQ(ListDir(o.out_dir), std::vector<std::string>{"checkpoint"});  // no checkpoint.tmp
  o.resume = true;
  // The checkpoint holds no teacher weights, only a reference: resuming with
  // another teacher file is refused.
  ConvertOptions other = o;
  other.teacher = dir.path() + "/copy.gguf";
  WriteText(other.teacher, Slurp(o.teacher));
  auto refused = Convert(other);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("copy.gguf"), std::string::npos) << refused.status();
  auto resumed = Convert(o);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_TRUE(resumed->resumed);
  EXPECT_TRUE(model::LoadModel(o.out_dir).ok());
}

TEST(WriteFailure, FailedExportKeepsThePreviousModelFiles) {
  TempDir dir;
  ConvertOptions o = Options(dir);
  o.checkpoint_every = 0;
  ASSERT_TRUE(Convert(o).ok());
  const std::vector<std::string> files = ListDir(o.out_dir);
  const std::string weights = Slurp(o.out_dir + "/model.safetensors");
  const std::string config = Slurp(o.out_dir + "/config.json");
  // Export again (resuming a finished run re-exports it), with a disk that
  // has room for the small files but not for the weights.
  o.resume = true;
  o.peft = true;
  std::unique_ptr<FileSizeLimit> limit;
  auto r = Convert(o, [&](const ProgressEvent& e) {
    if (e.stage == "export") limit = std::make_unique<FileSizeLimit>(8192);
    return true;
  });
  limit.reset();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.safetensors"), std::string::npos) << r.status();
  std::printf("error: %s\n", r.status().ToString().c_str());
  EXPECT_EQ(ListDir(o.out_dir), files);  // no staging folder, no adapter/
  EXPECT_EQ(Slurp(o.out_dir + "/model.safetensors"), weights);
  EXPECT_EQ(Slurp(o.out_dir + "/config.json"), config);
  // With room again, the export completes.
  auto again = Convert(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(PathExists(o.out_dir + "/adapter/adapter_model.safetensors"));
  EXPECT_EQ(Slurp(o.out_dir + "/model.safetensors"), weights);  // the same student
}

}  // namespace
}  // namespace linearize::convert
