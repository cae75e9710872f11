// Plain value types shared by the engine's parts (resolver, host info,
// sockets). No Asio, no gRPC: the service layer converts these to and from
// the proto messages.
#ifndef SOCKAGENT_AGENT_TYPES_H_
#define SOCKAGENT_AGENT_TYPES_H_

#include <cstdint>
#include <string>

namespace sockagent {

enum class Family { kUnspecified, kIpv4, kIpv6, kUnix };

enum class SocketType { kUnspecified, kStream, kDgram, kRaw };

enum class Transport { kTcp, kUdp, kUnix };

// A concrete socket address as the kernel reports it.
struct SocketAddress {
  Family family = Family::kUnspecified;
  std::string ip;  // Textual IPv4/IPv6 (with %scope where present).
  uint16_t port = 0;
  std::string unix_path;  // kUnix only.

  // "127.0.0.1:80", "[::1]:80", "unix:/path" — for messages and logs.
  std::string ToString() const;

  friend bool operator==(const SocketAddress&, const SocketAddress&) = default;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_TYPES_H_
