// Server-assigned ids: a prefix and 20 random base-32 characters (100 bits),
// e.g. "job-k3v9...". Opaque to clients; at most 64 characters.
#pragma once

#include <string>
#include <string_view>

namespace linearize::scheduler {

std::string NewId(std::string_view prefix);

}  // namespace linearize::scheduler
