#include "services/common/shutdown.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "services/common/log.h"

namespace linearize::server {
namespace {

std::atomic<bool> g_installed{false};

sigset_t ShutdownSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShutdownSignals>> ShutdownSignals::Install() {
  if (g_installed.exchange(true)) {
    return absl::FailedPreconditionError("shutdown signals: already installed in this process");
  }
  const sigset_t set = ShutdownSet();
  if (int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    g_installed = false;
    return absl::InternalError(absl::StrCat("pthread_sigmask: ", std::strerror(err)));
  }
  std::unique_ptr<ShutdownSignals> signals(new ShutdownSignals());
  signals->signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC);
  signals->wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (signals->signal_fd_ < 0 || signals->wake_fd_ < 0) {
    const int err = errno;
    return absl::InternalError(absl::StrCat("signalfd/eventfd: ", std::strerror(err)));
  }
  signals->watcher_ = std::thread([s = signals.get()] { s->Watch(); });
  return signals;
}

ShutdownSignals::~ShutdownSignals() {
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  }
  if (watcher_.joinable()) watcher_.join();
  if (callback_thread_.joinable()) callback_thread_.join();
  if (signal_fd_ >= 0) close(signal_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  g_installed = false;
}

void ShutdownSignals::Watch() {
  for (;;) {
    pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    signalfd_siginfo info{};
    if (read(signal_fd_, &info, sizeof(info)) != sizeof(info)) continue;
    const int signo = static_cast<int>(info.ssi_signo);
    Request(signo == SIGTERM ? "SIGTERM" : "SIGINT", signo);
  }
}

void ShutdownSignals::Request(std::string reason, int signal_number) {
  std::lock_guard<std::mutex> lock(mu_);
  if (requested_) {
    if (signal_number != 0) {
      // A second signal: the operator wants out now.
      LogWarning("shutdown.forced", {{"signal", reason}});
      _exit(128 + signal_number);
    }
    return;
  }
  requested_ = true;
  reason_ = std::move(reason);
  LogInfo("shutdown.requested", {{"reason", reason_}});
  if (callback_) StartCallbackLocked();
  cv_.notify_all();
}

void ShutdownSignals::StartCallbackLocked() {
  running_ = true;
  callback_thread_ = std::thread([this] {
    callback_(reason_);
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
    done_ = true;
    cv_.notify_all();
  });
}

void ShutdownSignals::OnShutdown(std::function<void(std::string_view reason)> callback) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ || done_) return;  // the first callback already ran
  callback_ = std::move(callback);
  if (requested_ && callback_) StartCallbackLocked();
}

void ShutdownSignals::Trigger(std::string_view reason) { Request(std::string(reason), 0); }

bool ShutdownSignals::requested() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requested_;
}

void ShutdownSignals::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return requested_ && !running_; });
}

}  // namespace linearize::server
