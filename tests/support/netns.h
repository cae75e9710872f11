// Network namespaces the tests create and always remove, so names and
// traffic under test never leave the machine: `ip netns exec` bind-mounts
// /etc/netns/NAME/hosts and resolv.conf over the real ones.
#ifndef SOCKAGENT_TESTS_SUPPORT_NETNS_H_
#define SOCKAGENT_TESTS_SUPPORT_NETNS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sockagent::testing {

class TestNetns {
 public:
  // Creates namespace "<prefix>-<pid>-<n>" with loopback up and the given
  // hosts and resolv.conf content. Fails (the caller skips) when not root or
  // when namespaces are unavailable; the status says why. The first call in
  // a process also removes namespaces left by test processes that died
  // (their pid no longer exists).
  static absl::StatusOr<std::unique_ptr<TestNetns>> Create(
      const std::string& prefix, const std::string& hosts,
      const std::string& resolv_conf);
  // Deletes the namespace and its /etc/netns folder.
  ~TestNetns();

  const std::string& name() const { return name_; }

  // argv run inside the namespace: {"ip", "netns", "exec", name, argv...}.
  std::vector<std::string> Exec(const std::vector<std::string>& argv) const;

 private:
  std::string name_;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_NETNS_H_
