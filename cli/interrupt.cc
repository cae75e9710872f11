#include "cli/interrupt.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sockctl {
namespace {

// What the handler may touch: lock-free atomics only.
std::atomic<int> g_write_fd{-1};
std::atomic<bool> g_raised{false};
static_assert(std::atomic<int>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

struct sigaction g_old_int;
struct sigaction g_old_term;

void OnSignal(int) {
  if (g_raised.exchange(true)) {
    // The second signal: the user does not want to wait for the cleanup.
    _exit(kExitInterrupted);
  }
  const int saved_errno = errno;
  const int fd = g_write_fd.load();
  if (fd >= 0) {
    const char byte = 1;
    // Non-blocking; a full pipe already wakes every reader.
    (void)!write(fd, &byte, 1);
  }
  errno = saved_errno;
}

}  // namespace

absl::StatusOr<std::unique_ptr<InterruptFlag>> InterruptFlag::Install() {
  if (g_write_fd.load() >= 0) {
    return absl::FailedPreconditionError("an InterruptFlag is installed");
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::ErrnoToStatus(errno, "pipe2");
  }
  g_raised.store(false);
  g_write_fd.store(fds[1]);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = &OnSignal;
  sigemptyset(&action.sa_mask);
  // Restart interrupted system calls: gRPC's threads need not see EINTR.
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &g_old_int);
  sigaction(SIGTERM, &action, &g_old_term);
  return std::unique_ptr<InterruptFlag>(new InterruptFlag(fds[0], fds[1]));
}

InterruptFlag::~InterruptFlag() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  g_write_fd.store(-1);
  close(read_fd_);
  close(write_fd_);
}

bool InterruptFlag::raised() const { return g_raised.load(); }

bool InterruptFlag::WaitFor(absl::Duration d) const {
  const absl::Time until = absl::Now() + d;
  while (!raised()) {
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    pollfd pfd = {read_fd_, POLLIN, 0};
    // The byte is left in the pipe, so every later wait returns at once.
    const int n = poll(&pfd, 1,
                       static_cast<int>(absl::ToInt64Milliseconds(
                           absl::Ceil(left, absl::Milliseconds(1)))));
    if (n < 0 && errno != EINTR) break;
  }
  return raised();
}

}  // namespace sockctl
