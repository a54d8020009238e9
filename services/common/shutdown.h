// SIGTERM / SIGINT handling for every service main: the first signal runs
// the shutdown callback once (on its own thread), a second one while it
// runs exits at once with 128 + signal number.
//
//   int main(...) {
//     auto signals = ShutdownSignals::Install();          // before any thread
//     ... start the server ...
//     (*signals)->OnShutdown([&](std::string_view why) {
//       server->Shutdown(absl::Seconds(30));                // drain, then stop
//     });
//     server->Wait();
//   }
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"

namespace linearize::server {

class ShutdownSignals {
 public:
  // Blocks SIGTERM and SIGINT in the calling thread, so in every thread it
  // starts afterwards, and watches them on a thread of its own (signalfd).
  // Call first thing in main: a thread started earlier would still receive
  // the signals and die of them. Child processes inherit the blocked mask:
  // unblock it in them (posix_spawnattr_setsigmask). FAILED_PRECONDITION
  // while another instance exists.
  static absl::StatusOr<std::unique_ptr<ShutdownSignals>> Install();
  // Stops watching and joins the callback if it is running. Signals stay
  // blocked.
  ~ShutdownSignals();

  // Sets the callback; `reason` is "SIGTERM", "SIGINT" or Trigger's. If a
  // signal already arrived, the callback runs at once.
  void OnShutdown(std::function<void(std::string_view reason)> callback);

  // Starts shutdown as a signal would (tests, an admin RPC, a fatal error).
  void Trigger(std::string_view reason);

  bool requested() const;
  // Blocks until shutdown was requested and the callback (if any) returned.
  void Wait();

 private:
  ShutdownSignals() = default;
  void Watch();
  void Request(std::string reason, int signal_number);
  void StartCallbackLocked();

  int signal_fd_ = -1;
  int wake_fd_ = -1;
  std::thread watcher_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::function<void(std::string_view)> callback_;
  std::string reason_;
  bool requested_ = false;
  bool running_ = false;  // the callback is running
  bool done_ = false;     // the callback returned (or there was none when waited)
  std::thread callback_thread_;
};

}  // namespace linearize::server
