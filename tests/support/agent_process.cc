#include "tests/support/agent_process.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <iostream>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sockagent::testing {

absl::StatusOr<std::unique_ptr<AgentProcess>> AgentProcess::Start(
    std::vector<std::string> args, const std::string& netns,
    const std::string& binary) {
  std::vector<std::string> argv;
  if (!netns.empty()) argv = {"ip", "netns", "exec", netns};
  argv.push_back(binary);
  // Tests that do not care about access get a loopback TCP agent; it needs
  // --insecure unless the test configures a token, TLS or a UNIX socket.
  bool has_listen = false;
  bool needs_insecure = true;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (absl::StartsWith(a, "--listen")) has_listen = true;
    // "--listen=" alone: the daemon's default, an owner-only UNIX socket.
    if (absl::StartsWith(a, "--listen=unix:") || a == "--listen=" ||
        (a == "--listen" && i + 1 < args.size() &&
         absl::StartsWith(args[i + 1], "unix:")) ||
        absl::StartsWith(a, "--token-file") ||
        absl::StartsWith(a, "--token_file") ||
        absl::StartsWith(a, "--tls-cert") ||
        absl::StartsWith(a, "--tls_cert") || a == "--insecure" ||
        absl::StartsWith(a, "--insecure=")) {
      needs_insecure = false;
    }
  }
  if (!has_listen) argv.push_back("--listen=127.0.0.1:0");
  if (needs_insecure) argv.push_back("--insecure");
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::Start(argv);
  if (!child.ok()) return child.status();
  auto agent = std::unique_ptr<AgentProcess>(new AgentProcess());
  agent->child_ = *std::move(child);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    auto line = agent->child_->ReadLine(deadline);
    if (!line.ok()) return line.status();
    constexpr std::string_view kMetrics = "metrics on ";
    if (size_t m = line->find(kMetrics); m != std::string::npos) {
      agent->metrics_url_ = line->substr(m + kMetrics.size());
    }
    constexpr std::string_view kMarker = "serving on ";
    size_t at = line->find(kMarker);
    if (at != std::string::npos) {
      agent->address_ = line->substr(at + kMarker.size());
      return agent;
    }
  }
}

std::string ReleaseAgentPath() {
  const char* path = getenv("SOCKAGENTD_RELEASE");
  return path == nullptr ? "" : path;
}

bool ReleaseAgentRequired() {
  const char* ci = getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

absl::StatusOr<int> AgentProcess::Stop() {
  stopped_ = true;
  return child_->Stop(SIGTERM, absl::Now() + absl::Seconds(20));
}

AgentProcess::~AgentProcess() {
  if (stopped_ || !child_) return;
  absl::StatusOr<int> status = Stop();
  // A daemon that did not end cleanly on SIGTERM crashed or refused to run
  // earlier: show the end of what it said, which is where a sanitizer report
  // or a fatal log line lands. (Tests that kill it on purpose Stop() it
  // themselves or see SIGKILL here, which is not reported.)
  const bool clean =
      status.ok() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  const bool killed =
      status.ok() && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL;
  if (!clean && !killed) {
    std::string err = child_->DrainStderr();
    constexpr size_t kTail = 16 * 1024;
    if (err.size() > kTail) err = "..." + err.substr(err.size() - kTail);
    std::cerr << "sockagentd (pid " << child_->pid()
              << ") did not exit cleanly ("
              << (status.ok() ? absl::StrCat("wait status ", *status)
                              : status.status().ToString())
              << "); the end of its stderr:\n"
              << err << std::endl;
  }
}

CommandResult RunSockctl(const std::string& address,
                         const std::vector<std::string>& args,
                         const std::string& input) {
  std::vector<std::string> argv = {SOCKCTL_PATH, "--agent", address};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, input, absl::Seconds(60));
}

TempDir::TempDir() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "sockagent-test-XXXXXX")
          .string();
  char* dir = mkdtemp(tmpl.data());
  path_ = dir ? dir : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

}  // namespace sockagent::testing
