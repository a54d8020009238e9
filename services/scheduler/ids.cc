#include "services/scheduler/ids.h"

#include <mutex>
#include <random>

namespace linearize::scheduler {

std::string NewId(std::string_view prefix) {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";  // 32 symbols
  static std::mutex mu;
  static std::mt19937_64 gen{std::random_device{}()};
  std::string id(prefix);
  id.push_back('-');
  std::lock_guard<std::mutex> lock(mu);
  uint64_t bits = gen(), more = gen();
  for (int i = 0; i < 20; ++i) {
    uint64_t& src = i < 12 ? bits : more;
    id.push_back(kAlphabet[src & 31]);
    src >>= 5;
  }
  return id;
}

}  // namespace linearize::scheduler
