// Stop strings over streamed text: finds a stop string even when it is split
// across tokens, and holds back text that might be the start of one so a
// client never sees part of a stop string.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace linearize::runtime {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string emit;                    // text safe to show now
    std::optional<std::string> matched;  // set when a stop string completed
  };
  // Adds newly decoded text. After a match, `emit` is the text before the
  // stop string; later calls are ignored.
  Result Push(std::string_view text);
  // What is still held back (the end of the stream, no match).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool done_ = false;
};

}  // namespace linearize::runtime
