#include "services/common/shutdown.h"

#include <signal.h>

#include <atomic>

#include "gtest/gtest.h"

namespace linearize::server {
namespace {

TEST(ShutdownTest, SignalRunsTheCallbackOnce) {
  auto signals = ShutdownSignals::Install();
  ASSERT_TRUE(signals.ok()) << signals.status();
  EXPECT_EQ(ShutdownSignals::Install().status().code(), absl::StatusCode::kFailedPrecondition);
  std::atomic<int> calls{0};
  std::string reason;
  (*signals)->OnShutdown([&](std::string_view why) {
    reason = std::string(why);
    calls.fetch_add(1);
  });
  EXPECT_FALSE((*signals)->requested());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);  // blocked here; delivered to the watcher
  (*signals)->Wait();
  EXPECT_TRUE((*signals)->requested());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(reason, "SIGTERM");
  (*signals)->Trigger("again");  // a second programmatic request is ignored
  (*signals)->Wait();
  EXPECT_EQ(calls.load(), 1);
}

TEST(ShutdownTest, TriggerBeforeCallbackRunsItWhenSet) {
  auto signals = ShutdownSignals::Install();
  ASSERT_TRUE(signals.ok()) << signals.status();
  (*signals)->Trigger("test");
  std::string reason;
  (*signals)->OnShutdown([&](std::string_view why) { reason = std::string(why); });
  (*signals)->Wait();
  EXPECT_EQ(reason, "test");
}

TEST(ShutdownDeathTest, SecondSignalExitsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto signals = ShutdownSignals::Install();
        // A callback that never finishes, like a drain that hangs.
        (*signals)->OnShutdown([](std::string_view) { pause(); });
        kill(getpid(), SIGINT);
        sleep(1);
        kill(getpid(), SIGINT);
        sleep(10);
        _exit(0);
      },
      ::testing::ExitedWithCode(128 + SIGINT), "shutdown.forced");
}

}  // namespace
}  // namespace linearize::server
