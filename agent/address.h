// Socket address helpers shared by the engine's parts: parsing host and port
// text, building kernel addresses, converting what the kernel reports into
// SocketAddress, and PackedAddress, the compact form a connection keeps.
//
// Pure functions and value types; any thread. Includes Asio: for the
// engine's .cc files only, never for the service layer.
#ifndef SOCKAGENT_AGENT_ADDRESS_H_
#define SOCKAGENT_AGENT_ADDRESS_H_

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/types.h"

namespace sockagent {

// Longest UNIX socket path: sun_path minus its terminating NUL.
inline constexpr size_t kMaxUnixPath = 107;

// "" -> 0; "80" -> 80; a name such as "www" -> nullopt (to be looked up as
// a service); digits above 65535 -> InvalidArgument.
absl::StatusOr<std::optional<uint16_t>> ParsePort(absl::string_view port);

// The address when `host` is a numeric IPv4/IPv6 literal ("127.0.0.1",
// "::1", "[::1]", "fe80::1%lo"); nullopt when it is a name.
std::optional<asio::ip::address> ParseIpLiteral(absl::string_view host);

// kUnspecified matches both IP families; kUnix matches none.
bool FamilyMatches(Family family, const asio::ip::address& address);

SocketAddress ToSocketAddress(const asio::ip::address& address, uint16_t port);

// The kernel address of a UNIX socket at `path` ("@name": abstract
// namespace). InvalidArgument when empty or longer than kMaxUnixPath.
absl::StatusOr<asio::generic::stream_protocol::endpoint> UnixEndpoint(
    absl::string_view path);

// The address a connection keeps for its whole life (and in the closed
// history): 48 bytes where SocketAddress takes 72, and a UNIX path is shared
// (every connection accepted by a UNIX server points at the server's path).
class PackedAddress {
 public:
  PackedAddress() = default;

  static PackedAddress Ip(const asio::ip::address& address, uint16_t port);
  static PackedAddress Unix(std::shared_ptr<const std::string> path);
  // From what getsockname/getpeername/accept/recvfrom reported.
  static PackedAddress FromKernel(const void* sockaddr, size_t length);

  Family family() const { return family_; }
  bool is_ip() const {
    return family_ == Family::kIpv4 || family_ == Family::kIpv6;
  }
  asio::ip::address address() const { return ip_.address(); }
  uint16_t port() const { return ip_.port(); }
  asio::ip::udp::endpoint udp() const { return {ip_.address(), ip_.port()}; }

  SocketAddress Unpack() const;
  std::string ToString() const { return Unpack().ToString(); }

 private:
  Family family_ = Family::kUnspecified;
  // asio's tcp endpoint is a plain sockaddr_in/sockaddr_in6 union; it serves
  // UDP addresses too.
  asio::ip::tcp::endpoint ip_;
  std::shared_ptr<const std::string> unix_path_;  // Null: unnamed.
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ADDRESS_H_
