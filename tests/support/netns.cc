#include "tests/support/netns.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {

namespace {

// Deletes "<prefix>-<pid>-<n>" namespaces whose pid is gone: a test that
// crashed could not clean up after itself.
void RemoveStaleNamespaces() {
  CommandResult list = RunCommand({"ip", "netns", "list"});
  for (absl::string_view line : absl::StrSplit(list.out, '\n')) {
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    if (words.empty() || !absl::StartsWith(words[0], "sa")) continue;
    std::vector<std::string> parts = absl::StrSplit(words[0], '-');
    int pid = 0;
    if (parts.size() < 3 || !absl::SimpleAtoi(parts[parts.size() - 2], &pid) ||
        pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) {
      continue;
    }
    RunCommand({"ip", "netns", "del", words[0]});
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path("/etc/netns") / words[0],
                                ec);
  }
}

}  // namespace

std::vector<std::string> TestNetns::Exec(
    const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {"ip", "netns", "exec", name_};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

absl::StatusOr<std::unique_ptr<TestNetns>> TestNetns::Create(
    const std::string& prefix, const std::string& hosts,
    const std::string& resolv_conf) {
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "network namespaces need root (run the suite as root, as CI does)");
  }
  static std::once_flag sweep;
  std::call_once(sweep, RemoveStaleNamespaces);
  static std::atomic<int> counter{0};
  auto ns = std::unique_ptr<TestNetns>(new TestNetns());
  std::string name = absl::StrCat(prefix, "-", getpid(), "-", counter++);
  CommandResult add = RunCommand({"ip", "netns", "add", name});
  if (add.exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("ip netns add ", name, " failed: ", add.err));
  }
  ns->name_ = name;  // From here on the destructor cleans up.
  CommandResult up = RunCommand(
      {"ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"});
  if (up.exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("loopback up in ", name, " failed: ", up.err));
  }
  std::filesystem::path dir = std::filesystem::path("/etc/netns") / name;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("create ", dir.string(), ": ", ec.message()));
  }
  std::ofstream(dir / "hosts") << hosts;
  std::ofstream(dir / "resolv.conf") << resolv_conf;
  return ns;
}

TestNetns::~TestNetns() {
  if (name_.empty()) return;
  RunCommand({"ip", "netns", "del", name_});
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path("/etc/netns") / name_, ec);
}

}  // namespace sockagent::testing
