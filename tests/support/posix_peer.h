// Plain POSIX sockets for tests: the independent peers that talk to the
// agent (so our engine is never tested only against itself). Blocking calls,
// each bounded by kPeerTimeout. Any thread may use them.
#ifndef SOCKAGENT_TESTS_SUPPORT_POSIX_PEER_H_
#define SOCKAGENT_TESTS_SUPPORT_POSIX_PEER_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/types.h"

namespace sockagent::testing {

// How long one blocking peer operation may take before it gives up.
// Generous: sanitizers and a shared 2-core machine are slow.
inline constexpr absl::Duration kPeerTimeout = absl::Seconds(30);

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset();
    fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// sockaddr for an IP SocketAddress (numeric ip).
inline socklen_t ToSockaddr(const SocketAddress& a, sockaddr_storage* out) {
  std::memset(out, 0, sizeof(*out));
  if (a.family == Family::kIpv6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(out);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a.port);
    inet_pton(AF_INET6, a.ip.c_str(), &in6->sin6_addr);
    return sizeof(sockaddr_in6);
  }
  auto* in = reinterpret_cast<sockaddr_in*>(out);
  in->sin_family = AF_INET;
  in->sin_port = htons(a.port);
  inet_pton(AF_INET, a.ip.c_str(), &in->sin_addr);
  return sizeof(sockaddr_in);
}

inline SocketAddress Ip(const std::string& ip, uint16_t port) {
  SocketAddress a;
  a.family = ip.find(':') == std::string::npos ? Family::kIpv4 : Family::kIpv6;
  a.ip = ip;
  a.port = port;
  return a;
}

// Blocking connect; invalid Fd on failure.
inline Fd TcpConnect(const SocketAddress& to) {
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(to, &ss);
  Fd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Fd();
  }
  return fd;
}

inline Fd UnixConnect(const std::string& path) {
  sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  socklen_t len = offsetof(sockaddr_un, sun_path) + path.size() + 1;
  if (!path.empty() && path[0] == '@') {
    addr.sun_path[0] = '\0';
    len -= 1;
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Fd();
  }
  return fd;
}

// A UDP socket bound to the loopback of `family`, port 0.
inline Fd UdpBound(Family family = Family::kIpv4) {
  const SocketAddress local =
      family == Family::kIpv6 ? Ip("::1", 0) : Ip("127.0.0.1", 0);
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(local, &ss);
  Fd fd(::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Fd();
  }
  return fd;
}

inline uint16_t LocalPort(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// A plain listening TCP socket on 127.0.0.1, port 0.
inline Fd TcpListen(int backlog, uint16_t* port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(Ip("127.0.0.1", 0), &ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(fd.get(), backlog) != 0) {
    return Fd();
  }
  *port = LocalPort(fd.get());
  return fd;
}

// Accepts one connection within kPeerTimeout.
inline Fd Accept(int listen_fd) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, absl::ToInt64Milliseconds(kPeerTimeout)) != 1) return Fd();
  return Fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
}

inline bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(n);
  }
  return true;
}

// Reads until EOF (or an error, or kPeerTimeout); `*error` gets errno if any.
inline std::string ReadToEof(int fd, int* error = nullptr) {
  std::string out;
  char buf[65536];
  const absl::Time deadline = absl::Now() + kPeerTimeout;
  if (error != nullptr) *error = 0;
  for (;;) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) {
      if (error != nullptr) *error = ETIMEDOUT;
      return out;
    }
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (error != nullptr) *error = errno;
      return out;
    }
    out.append(buf, n);
  }
}

// Reads exactly n bytes (less on EOF, error or kPeerTimeout).
inline std::string ReadExactly(int fd, size_t n) {
  std::string out;
  char buf[65536];
  const absl::Time deadline = absl::Now() + kPeerTimeout;
  while (out.size() < n) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) return out;
    const ssize_t got =
        ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (got <= 0) return out;
    out.append(buf, got);
  }
  return out;
}

// Reads exactly n bytes into *got (less on EOF, error or kPeerTimeout);
// returns the size of each read, so a test sees how the bytes were cut.
inline std::vector<size_t> ReadSizes(int fd, size_t n, std::string* got) {
  std::vector<size_t> sizes;
  char buf[4096];
  const absl::Time deadline = absl::Now() + kPeerTimeout;
  while (got->size() < n) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) break;
    const ssize_t k = ::recv(fd, buf, sizeof buf, 0);
    if (k <= 0) break;
    got->append(buf, k);
    sizes.push_back(static_cast<size_t>(k));
  }
  return sizes;
}

// Writes 64 KiB blocks without blocking until the receiver stops taking
// them (20 polls of 20 ms in a row without progress) or `cap` bytes went;
// returns the bytes written.
inline uint64_t WriteUntilStopped(int fd, uint64_t cap) {
  const std::string block(65536, 'w');
  uint64_t written = 0;
  for (int idle = 0; idle < 20 && written < cap;) {
    const ssize_t n =
        ::send(fd, block.data(), block.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      written += static_cast<uint64_t>(n);
      idle = 0;
      continue;
    }
    ++idle;
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, 20);  // Lets the receiver catch up.
  }
  return written;
}

inline bool SendTo(int fd, absl::string_view data, const SocketAddress& to) {
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(to, &ss);
  return ::sendto(fd, data.data(), data.size(), 0,
                  reinterpret_cast<sockaddr*>(&ss),
                  len) == static_cast<ssize_t>(data.size());
}

// One datagram within `timeout`, or nullopt.
inline std::optional<std::string> RecvDatagram(
    int fd, absl::Duration timeout = kPeerTimeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) !=
      1) {
    return std::nullopt;
  }
  char buf[65536];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  if (n < 0) return std::nullopt;
  return std::string(buf, n);
}

// close() sends RST instead of FIN.
inline void CloseWithReset(Fd& fd) {
  linger l{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  fd.Reset();
}

// Deterministic, position-dependent bytes: a reordered, lost or duplicated
// byte shows up as a mismatch.
inline char PatternByte(uint64_t i) {
  uint64_t x = (i / 8) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<char>(x >> (8 * (i % 8)));
}
inline std::string Pattern(uint64_t offset, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = PatternByte(offset + i);
  return out;
}

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_POSIX_PEER_H_
