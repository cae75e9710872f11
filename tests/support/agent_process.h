// A real sockagentd child process for end-to-end tests, optionally inside a
// network namespace, and helpers to run the real sockctl against it.
#ifndef SOCKAGENT_TESTS_SUPPORT_AGENT_PROCESS_H_
#define SOCKAGENT_TESTS_SUPPORT_AGENT_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {

class AgentProcess {
 public:
  // Starts sockagentd with `--listen 127.0.0.1:0` (unless `args` has its own
  // --listen), adds --insecure unless `args` listen on unix:, give a
  // --token-file, --tls-cert or --insecure themselves, and waits for its
  // "serving on ADDR" line. With `netns`, runs it inside that namespace via `ip
  // netns exec`.
  // `binary` is the daemon to run (default: the build's own sockagentd; see
  // ReleaseAgentPath for memory measurements).
  static absl::StatusOr<std::unique_ptr<AgentProcess>> Start(
      std::vector<std::string> args = {}, const std::string& netns = "",
      const std::string& binary = SOCKAGENTD_PATH);

  // Stops with SIGTERM (SIGKILL after 10 s) if still running.
  ~AgentProcess();

  // The gRPC target: "127.0.0.1:PORT" or "unix:/path".
  const std::string& address() const { return address_; }
  // With --metrics-listen: "http://127.0.0.1:PORT/metrics" from its
  // "metrics on URL" line; empty otherwise.
  const std::string& metrics_url() const { return metrics_url_; }
  pid_t pid() const { return child_->pid(); }

  // SIGTERM and wait; returns the waitpid status.
  absl::StatusOr<int> Stop();

  std::string Stderr() { return child_->DrainStderr(); }

 private:
  std::unique_ptr<ChildProcess> child_;
  std::string address_;
  std::string metrics_url_;
  bool stopped_ = false;
};

// A RelWithDebInfo sockagentd for RSS measurements (ASan keeps freed memory
// in quarantine and ignores malloc_trim, so an ASan agent's RSS says
// nothing): $SOCKAGENTD_RELEASE, which scripts/test.sh sets after building
// build/sockagentd. Empty when unset; callers GTEST_SKIP then, except under
// CI=true, where they fail (ReleaseAgentRequired).
std::string ReleaseAgentPath();
bool ReleaseAgentRequired();

// Runs the real sockctl binary with `--agent address` prepended.
CommandResult RunSockctl(const std::string& address,
                         const std::vector<std::string>& args,
                         const std::string& input = "");

// A fresh temporary directory, removed (with its content) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_AGENT_PROCESS_H_
