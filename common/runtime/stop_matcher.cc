#include "common/runtime/stop_matcher.h"

#include <algorithm>

namespace linearize::runtime {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

StopMatcher::Result StopMatcher::Push(std::string_view text) {
  Result r;
  if (done_) return r;
  pending_.append(text);
  if (stops_.empty()) {
    r.emit.swap(pending_);
    return r;
  }
  // The earliest complete stop string wins.
  size_t best = std::string::npos;
  const std::string* which = nullptr;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s);
    if (at < best) {
      best = at;
      which = &s;
    }
  }
  if (which != nullptr) {
    r.emit = pending_.substr(0, best);
    r.matched = *which;
    pending_.clear();
    done_ = true;
    return r;
  }
  // Hold back the longest tail that a stop string starts with.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (std::string_view(pending_).substr(pending_.size() - n) ==
          std::string_view(s).substr(0, n)) {
        hold = n;
        break;
      }
    }
  }
  r.emit = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopMatcher::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace linearize::runtime
