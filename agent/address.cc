#include "agent/address.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sockagent {

absl::StatusOr<std::optional<uint16_t>> ParsePort(absl::string_view port) {
  if (port.empty()) return std::optional<uint16_t>(0);
  bool digits = true;
  for (char c : port) digits = digits && absl::ascii_isdigit(c);
  // "-1", "+80": a signed number is a bad port, not a service name.
  if (!digits && port.size() > 1 && (port[0] == '-' || port[0] == '+')) {
    bool signed_number = true;
    for (char c : port.substr(1)) {
      signed_number = signed_number && absl::ascii_isdigit(c);
    }
    if (signed_number) {
      return absl::InvalidArgumentError(
          absl::StrCat("port ", port, " is out of range 0..65535"));
    }
  }
  if (!digits) return std::optional<uint16_t>();
  uint32_t value = 0;
  if (port.size() > 5 || !absl::SimpleAtoi(port, &value) || value > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", port, " is out of range 0..65535"));
  }
  return std::optional<uint16_t>(static_cast<uint16_t>(value));
}

std::optional<asio::ip::address> ParseIpLiteral(absl::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return std::nullopt;
  asio::error_code ec;
  asio::ip::address address = asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return address;
}

bool FamilyMatches(Family family, const asio::ip::address& address) {
  switch (family) {
    case Family::kUnspecified:
      return true;
    case Family::kIpv4:
      return address.is_v4();
    case Family::kIpv6:
      return address.is_v6();
    case Family::kUnix:
      return false;
  }
  return false;
}

SocketAddress ToSocketAddress(const asio::ip::address& address, uint16_t port) {
  SocketAddress out;
  out.family = address.is_v4() ? Family::kIpv4 : Family::kIpv6;
  out.ip = address.to_string();
  out.port = port;
  return out;
}

absl::StatusOr<asio::generic::stream_protocol::endpoint> UnixEndpoint(
    absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("unix path is empty");
  if (path.size() > kMaxUnixPath) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix path is ", path.size(), " bytes; at most ",
                     kMaxUnixPath, " fit in sun_path"));
  }
  sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  size_t length = offsetof(sockaddr_un, sun_path) + path.size();
  if (path.front() == '@') {
    addr.sun_path[0] = '\0';  // Abstract: the name is exactly these bytes.
  } else {
    length += 1;  // Include the terminating NUL for a filesystem path.
  }
  return asio::generic::stream_protocol::endpoint(&addr, length);
}

PackedAddress PackedAddress::Ip(const asio::ip::address& address,
                                uint16_t port) {
  PackedAddress out;
  out.family_ = address.is_v4() ? Family::kIpv4 : Family::kIpv6;
  out.ip_ = asio::ip::tcp::endpoint(address, port);
  return out;
}

PackedAddress PackedAddress::Unix(std::shared_ptr<const std::string> path) {
  PackedAddress out;
  out.family_ = Family::kUnix;
  out.unix_path_ = std::move(path);
  return out;
}

PackedAddress PackedAddress::FromKernel(const void* sockaddr_ptr,
                                        size_t length) {
  PackedAddress out;
  if (length < sizeof(sa_family_t)) return out;
  sa_family_t family;
  std::memcpy(&family, sockaddr_ptr, sizeof(family));
  if ((family == AF_INET && length >= sizeof(sockaddr_in)) ||
      (family == AF_INET6 && length >= sizeof(sockaddr_in6))) {
    out.family_ = family == AF_INET ? Family::kIpv4 : Family::kIpv6;
    std::memcpy(out.ip_.data(), sockaddr_ptr,
                family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
  } else if (family == AF_UNIX) {
    out.family_ = Family::kUnix;
    const auto* un = static_cast<const sockaddr_un*>(sockaddr_ptr);
    const size_t offset = offsetof(sockaddr_un, sun_path);
    if (length > offset) {
      size_t n = length - offset;
      if (un->sun_path[0] == '\0') {
        out.unix_path_ = std::make_shared<const std::string>(
            absl::StrCat("@", absl::string_view(un->sun_path + 1, n - 1)));
      } else {
        n = strnlen(un->sun_path, n);
        out.unix_path_ = std::make_shared<const std::string>(un->sun_path, n);
      }
    }
  }
  return out;
}

SocketAddress PackedAddress::Unpack() const {
  if (is_ip()) return ToSocketAddress(ip_.address(), ip_.port());
  SocketAddress out;
  out.family = family_;
  if (unix_path_ != nullptr) out.unix_path = *unix_path_;
  return out;
}

}  // namespace sockagent
