#include "tests/support/netns.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {

absl::StatusOr<std::unique_ptr<TestNetns>> TestNetns::Create(
    const std::string& prefix, const std::string& hosts,
    const std::string& resolv_conf) {
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "network namespaces need root (run the suite as root, as CI does)");
  }
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
