// What the agent reports about its host: names, kernel, network interfaces
// (GetHostInfo). Read from libc and the kernel on each call; nothing cached.
//
//   absl::StatusOr<HostDetails> details = ReadHostDetails();
//   details->fqdn = cached_fqdn;  // LookupFqdn, once, at startup.
//
// Threads: both functions may be called from any thread; they share no
// state. ReadHostDetails does no DNS and returns quickly (a few syscalls per
// interface). LookupFqdn may block for seconds on DNS: call it once, off the
// gRPC threads and the socket loop, and cache the answer.
#ifndef SOCKAGENT_AGENT_HOST_INFO_H_
#define SOCKAGENT_AGENT_HOST_INFO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/types.h"

namespace sockagent {

struct InterfaceAddress {
  Family family = Family::kUnspecified;  // kIpv4 or kIpv6.
  std::string address;  // Numeric; link-local IPv6 carries "%name".
  uint32_t prefix_length = 0;
  std::string broadcast;  // IPv4 on broadcast interfaces, else empty.
};

struct NetworkInterface {
  std::string name;
  uint32_t index = 0;
  // Set flags, in this order: "UP", "BROADCAST", "LOOPBACK", "POINTOPOINT",
  // "RUNNING", "MULTICAST", "PROMISC", "NOARP".
  std::vector<std::string> flags;
  uint32_t mtu = 0;  // 0 if the kernel would not say.
  // IPv4 first, then IPv6, each in the kernel's order.
  std::vector<InterfaceAddress> addresses;
  // "aa:bb:cc:dd:ee:ff"; empty when there is none or it is all zeros.
  std::string hardware_address;
};

struct HostDetails {
  std::string hostname;  // gethostname.
  std::string fqdn;      // Left empty by ReadHostDetails: the caller fills it.
  std::string os;        // uname: "Linux 6.1.0 x86_64".
  std::vector<NetworkInterface> interfaces;  // Sorted by index.
};

// gethostname, uname, getifaddrs (AF_PACKET entries give the index and
// hardware address) and SIOCGIFMTU. No DNS. INTERNAL if a call fails.
absl::StatusOr<HostDetails> ReadHostDetails();

// getaddrinfo(hostname, AI_CANONNAME)'s canonical name; "" on any failure.
// Blocking (files, then DNS per nsswitch.conf).
std::string LookupFqdn(const std::string& hostname);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_HOST_INFO_H_
