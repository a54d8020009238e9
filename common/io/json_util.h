// Small helpers for reading nlohmann::json values without exceptions.
// Internal to linearize_io.
#pragma once

#include <cstdint>
#include <optional>

#include "nlohmann/json.hpp"

namespace linearize::io::internal {

// A non-negative JSON integer; nullopt for anything else (floats included).
inline std::optional<uint64_t> JsonU64(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v >= 0) return static_cast<uint64_t>(v);
  }
  return std::nullopt;
}

// Any JSON integer that fits int64; nullopt for anything else.
inline std::optional<int64_t> JsonI64(const nlohmann::json& j) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v);
    return std::nullopt;
  }
  if (j.is_number_integer()) return j.get<int64_t>();
  return std::nullopt;
}

}  // namespace linearize::io::internal
