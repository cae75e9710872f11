#include "agent/host_info.h"

#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "agent/resolver.h"

namespace sockagent {
namespace {

absl::Status SystemError(absl::string_view call, int error) {
  char buf[256];
  // GNU strerror_r (g++ defines _GNU_SOURCE): returns the text.
  return absl::InternalError(
      absl::StrCat(call, ": ", strerror_r(error, buf, sizeof(buf))));
}

std::vector<std::string> FlagNames(unsigned int flags) {
  static constexpr std::pair<unsigned int, const char*> kNames[] = {
      {IFF_UP, "UP"},
      {IFF_BROADCAST, "BROADCAST"},
      {IFF_LOOPBACK, "LOOPBACK"},
      {IFF_POINTOPOINT, "POINTOPOINT"},
      {IFF_RUNNING, "RUNNING"},
      {IFF_MULTICAST, "MULTICAST"},
      {IFF_PROMISC, "PROMISC"},
      {IFF_NOARP, "NOARP"},
  };
  std::vector<std::string> names;
  for (const auto& [bit, name] : kNames) {
    if (flags & bit) names.emplace_back(name);
  }
  return names;
}

uint32_t PrefixLength(const struct sockaddr* netmask) {
  if (netmask == nullptr) return 0;
  const unsigned char* bytes = nullptr;
  size_t size = 0;
  if (netmask->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(netmask);
    bytes = reinterpret_cast<const unsigned char*>(&v4->sin_addr);
    size = sizeof(v4->sin_addr);
  } else if (netmask->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(netmask);
    bytes = reinterpret_cast<const unsigned char*>(&v6->sin6_addr);
    size = sizeof(v6->sin6_addr);
  }
  uint32_t bits = 0;
  for (size_t i = 0; i < size; ++i) bits += std::popcount(bytes[i]);
  return bits;
}

std::string HardwareAddress(const sockaddr_ll& link) {
  const size_t length = std::min<size_t>(link.sll_halen, sizeof(link.sll_addr));
  if (std::all_of(link.sll_addr, link.sll_addr + length,
                  [](unsigned char b) { return b == 0; })) {
    return "";  // None (length 0) or all zeros (loopback).
  }
  std::string out;
  for (size_t i = 0; i < length; ++i) {
    absl::StrAppendFormat(&out, "%s%02x", i == 0 ? "" : ":", link.sll_addr[i]);
  }
  return out;
}

// Any socket serves SIOCGIFMTU; IPv4 may be missing, so fall back to IPv6.
int OpenIoctlSocket() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  return fd;
}

uint32_t Mtu(int fd, const std::string& name) {
  struct ifreq request = {};
  if (fd < 0 || name.size() >= sizeof(request.ifr_name)) return 0;
  std::memcpy(request.ifr_name, name.data(), name.size());
  if (ioctl(fd, SIOCGIFMTU, &request) != 0 || request.ifr_mtu < 0) return 0;
  return static_cast<uint32_t>(request.ifr_mtu);
}

}  // namespace

absl::StatusOr<HostDetails> ReadHostDetails() {
  HostDetails details;

  char hostname[HOST_NAME_MAX + 1] = {};
  if (gethostname(hostname, sizeof(hostname) - 1) != 0) {
    return SystemError("gethostname", errno);
  }
  details.hostname = hostname;

  struct utsname uts;
  if (uname(&uts) != 0) return SystemError("uname", errno);
  details.os = absl::StrCat(uts.sysname, " ", uts.release, " ", uts.machine);

  struct ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return SystemError("getifaddrs", errno);
  absl::Cleanup free_list = [list] { freeifaddrs(list); };

  // Interfaces in first-seen order, found by name.
  absl::flat_hash_map<std::string, size_t> position;
  std::vector<NetworkInterface>& interfaces = details.interfaces;
  for (const struct ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    // IPv4 addresses with a label ("eth0:1") belong to the device "eth0".
    absl::string_view full_name = ifa->ifa_name;
    std::string name(full_name.substr(0, full_name.find(':')));
    auto [it, inserted] = position.try_emplace(name, interfaces.size());
    if (inserted) {
      NetworkInterface& created = interfaces.emplace_back();
      created.name = name;
      created.index = if_nametoindex(name.c_str());
      created.flags = FlagNames(ifa->ifa_flags);
    }
    NetworkInterface& itf = interfaces[it->second];
    if (ifa->ifa_addr == nullptr) continue;
    switch (ifa->ifa_addr->sa_family) {
      case AF_PACKET: {
        const auto* link = reinterpret_cast<const sockaddr_ll*>(ifa->ifa_addr);
        itf.index = static_cast<uint32_t>(link->sll_ifindex);
        itf.hardware_address = HardwareAddress(*link);
        break;
      }
      case AF_INET:
      case AF_INET6: {
        InterfaceAddress& address = itf.addresses.emplace_back();
        address.family =
            ifa->ifa_addr->sa_family == AF_INET ? Family::kIpv4 : Family::kIpv6;
        address.address = NumericHost(ifa->ifa_addr);
        address.prefix_length = PrefixLength(ifa->ifa_netmask);
        if (address.family == Family::kIpv4 &&
            (ifa->ifa_flags & IFF_BROADCAST) && ifa->ifa_broadaddr != nullptr) {
          address.broadcast = NumericHost(ifa->ifa_broadaddr);
        }
        break;
      }
      default:
        break;
    }
  }

  const int fd = OpenIoctlSocket();
  for (NetworkInterface& itf : interfaces) {
    itf.mtu = Mtu(fd, itf.name);
    std::stable_partition(
        itf.addresses.begin(), itf.addresses.end(),
        [](const InterfaceAddress& a) { return a.family == Family::kIpv4; });
  }
  if (fd >= 0) close(fd);
  std::stable_sort(interfaces.begin(), interfaces.end(),
                   [](const NetworkInterface& a, const NetworkInterface& b) {
                     return a.index < b.index;
                   });
  return details;
}

std::string LookupFqdn(const std::string& hostname) {
  ResolveQuery query;
  query.host = hostname;
  query.canonical_name = true;
  absl::StatusOr<std::vector<AddressEntry>> entries = ResolveBlocking(query);
  if (!entries.ok() || entries->empty()) return "";
  return entries->front().canonical_name;
}

}  // namespace sockagent
