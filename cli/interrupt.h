// Lets a long-running verb (`matrix`) clean up before it exits on Ctrl-C or
// SIGTERM: the signal handler only sets a flag and wakes whoever waits; the
// verb notices the flag between calls, cleans up and exits with
// kExitInterrupted. A second signal ends the process at once (130) for a
// cleanup that hangs. No gRPC here.
//
//   absl::StatusOr<std::unique_ptr<InterruptFlag>> interrupt =
//       InterruptFlag::Install();
//   while (!(*interrupt)->raised()) {
//     Probe();
//     (*interrupt)->WaitFor(absl::Seconds(1));
//   }
//   Cleanup();
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sockctl {

inline constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells do.

class InterruptFlag final {
 public:
  // Installs handlers for SIGINT and SIGTERM, for the whole process (the
  // signal may arrive on any thread, gRPC's included). One at a time:
  // FAILED_PRECONDITION while another is installed.
  static absl::StatusOr<std::unique_ptr<InterruptFlag>> Install();
  // Puts back the handlers that were there before.
  ~InterruptFlag();
  InterruptFlag(const InterruptFlag&) = delete;
  InterruptFlag& operator=(const InterruptFlag&) = delete;

  // True once SIGINT or SIGTERM arrived. Any thread.
  bool raised() const;
  // Sleeps up to `d`, returning early when a signal arrives (or already
  // has); returns raised(). Any thread.
  bool WaitFor(absl::Duration d) const;

 private:
  InterruptFlag(int read_fd, int write_fd)
      : read_fd_(read_fd), write_fd_(write_fd) {}

  int read_fd_;   // Becomes readable once a signal arrived.
  int write_fd_;  // The handler writes a byte here.
};

}  // namespace sockctl
