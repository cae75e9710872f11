// Child processes for tests: the real sockagentd and sockctl binaries,
// python3 peers, `ip netns` commands. Everything waits with a deadline; no
// test sleeps to synchronise.
#ifndef SOCKAGENT_TESTS_SUPPORT_SUBPROCESS_H_
#define SOCKAGENT_TESTS_SUPPORT_SUBPROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/support/wait.h"

namespace sockagent::testing {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or timed out.
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (searched in PATH) to completion, feeding `input` to stdin.
// Kills it (SIGKILL) when `timeout` passes.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& input = "",
                         absl::Duration timeout = absl::Seconds(30));

// A running child with its stdout and stderr captured through pipes.
// The destructor kills it (SIGKILL) if it still runs.
class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv);
  ~ChildProcess();

  pid_t pid() const { return pid_; }

  // The next line of stdout (without the newline), waiting until `deadline`.
  absl::StatusOr<std::string> ReadLine(absl::Time deadline);

  // Sends `sig` and waits for the exit until `deadline`. Returns the exit
  // status as from waitpid, or DeadlineExceeded.
  absl::StatusOr<int> Stop(int sig, absl::Time deadline);

  // Everything the child wrote to stderr so far (non-blocking drain).
  std::string DrainStderr();

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_buf_;
  std::string err_buf_;
  bool exited_ = false;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_SUBPROCESS_H_
