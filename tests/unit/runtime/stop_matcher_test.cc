#include "common/runtime/stop_matcher.h"

#include "gtest/gtest.h"

namespace linearize::runtime {
namespace {

// Feeds `pieces` one at a time; returns everything emitted and the match.
std::pair<std::string, std::optional<std::string>> Feed(StopMatcher& m,
                                                        const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) {
    StopMatcher::Result r = m.Push(p);
    out += r.emit;
    if (r.matched) return {out, r.matched};
  }
  return {out + m.Flush(), std::nullopt};
}

TEST(StopMatcher, FindsAStopSplitAcrossPieces) {
  StopMatcher m({"</end>"});
  auto [text, matched] = Feed(m, {"hello </", "en", "d> tail"});
  EXPECT_EQ(text, "hello ");
  EXPECT_EQ(matched, "</end>");
}

TEST(StopMatcher, HoldsBackOnlyAPossiblePrefix) {
  StopMatcher m({"STOP"});
  StopMatcher::Result r = m.Push("abc ST");
  EXPECT_EQ(r.emit, "abc ");  // "ST" may start STOP
  r = m.Push("ART");
  EXPECT_EQ(r.emit, "START");  // it did not
  EXPECT_FALSE(r.matched);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcher, EarliestOfSeveralWinsAndNoStopsPassesThrough) {
  StopMatcher m({"xyz", "b"});
  auto [text, matched] = Feed(m, {"aab", "xyz"});
  EXPECT_EQ(text, "aa");
  EXPECT_EQ(matched, "b");
  StopMatcher none({});
  EXPECT_EQ(Feed(none, {"a", "b"}).first, "ab");
}

TEST(StopMatcher, UnmatchedTailIsFlushed) {
  StopMatcher m({"abcd"});
  auto [text, matched] = Feed(m, {"x", "ab", "c"});
  EXPECT_FALSE(matched);
  EXPECT_EQ(text, "xabc");
}

}  // namespace
}  // namespace linearize::runtime
