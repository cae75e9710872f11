// Host details read from the real kernel. Only loopback is assumed (every
// Linux machine has `lo` with 127.0.0.1/8); no DNS lookups.
#include "agent/host_info.h"

#include <limits.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sockagent {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::StartsWith;

const NetworkInterface* FindInterface(const HostDetails& details,
                                      const std::string& name) {
  for (const NetworkInterface& itf : details.interfaces) {
    if (itf.name == name) return &itf;
  }
  return nullptr;
}

TEST(HostInfo, HostnameEqualsGethostname) {
  char expected[HOST_NAME_MAX + 1] = {};
  ASSERT_EQ(gethostname(expected, sizeof(expected) - 1), 0);
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->hostname, expected);
}

TEST(HostInfo, FqdnIsLeftForTheCaller) {
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->fqdn, "");
}

TEST(HostInfo, OsIsSysnameReleaseMachine) {
  struct utsname uts;
  ASSERT_EQ(uname(&uts), 0);
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->os,
            std::string(uts.sysname) + " " + uts.release + " " + uts.machine);
  EXPECT_THAT(details->os, StartsWith("Linux "));
}

TEST(HostInfo, LoopbackIsUpWith127001Prefix8) {
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  const NetworkInterface* lo = FindInterface(*details, "lo");
  ASSERT_NE(lo, nullptr);
  EXPECT_THAT(lo->flags, Contains("UP"));
  EXPECT_THAT(lo->flags, Contains("LOOPBACK"));
  EXPECT_GT(lo->mtu, 0u);
  EXPECT_GT(lo->index, 0u);
  EXPECT_THAT(lo->addresses,
              Contains(AllOf(Field(&InterfaceAddress::family, Family::kIpv4),
                             Field(&InterfaceAddress::address, "127.0.0.1"),
                             Field(&InterfaceAddress::prefix_length, 8u))));
  EXPECT_EQ(lo->hardware_address, "");  // All zeros on loopback.
}

TEST(HostInfo, LoopbackIpv6IsPrefix128WhenPresent) {
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  const NetworkInterface* lo = FindInterface(*details, "lo");
  ASSERT_NE(lo, nullptr);
  for (const InterfaceAddress& a : lo->addresses) {
    if (a.address == "::1") {
      EXPECT_EQ(a.family, Family::kIpv6);
      EXPECT_EQ(a.prefix_length, 128u);
    }
  }
}

TEST(HostInfo, InterfacesSortedByIndexWithIpv4First) {
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_TRUE(std::is_sorted(
      details->interfaces.begin(), details->interfaces.end(),
      [](const auto& a, const auto& b) { return a.index < b.index; }));
  for (const NetworkInterface& itf : details->interfaces) {
    EXPECT_TRUE(std::is_partitioned(
        itf.addresses.begin(), itf.addresses.end(),
        [](const auto& a) { return a.family == Family::kIpv4; }))
        << itf.name;
  }
}

TEST(HostInfo, HardwareAddressesAreColonSeparatedHex) {
  auto details = ReadHostDetails();
  ASSERT_TRUE(details.ok()) << details.status();
  for (const NetworkInterface& itf : details->interfaces) {
    if (itf.hardware_address.empty()) continue;
    EXPECT_THAT(itf.hardware_address,
                ::testing::MatchesRegex("[0-9a-f]{2}(:[0-9a-f]{2})*"))
        << itf.name;
  }
}

// Answered by /etc/hosts (no DNS).
TEST(HostInfo, FqdnOfLocalhostIsLocalhost) {
  EXPECT_EQ(LookupFqdn("localhost"), "localhost");
}

TEST(HostInfo, FqdnLookupFailureIsEmpty) {
  EXPECT_EQ(LookupFqdn(""), "");  // Rejected before any lookup.
}

}  // namespace
}  // namespace sockagent
