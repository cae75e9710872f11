// Test helpers for the engine tests: a blocking wrapper around the engine's
// callback API, plain POSIX sockets as independent peers (so the engine is
// never tested against itself), and waiting for a condition with a deadline.
//
// Any thread may use these; SyncEngine calls block the calling test thread
// (never the engine's loop thread) until the engine answers.
#ifndef SOCKAGENT_TESTS_AGENT_ENGINE_TEST_UTIL_H_
#define SOCKAGENT_TESTS_AGENT_ENGINE_TEST_UTIL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "gtest/gtest.h"

namespace sockagent::testing {

// How long any single engine call or socket wait may take before the test
// fails. Generous: sanitizers and a shared 2-core machine are slow.
inline constexpr absl::Duration kTimeout = absl::Seconds(30);

// Polls `cond` until it holds or `timeout` passes. The short sleep between
// checks is a poll interval, not synchronisation: the result is the
// condition, never the passage of time.
inline bool WaitFor(const std::function<bool()>& cond,
                    absl::Duration timeout = kTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// Blocking calls on an Engine.
class SyncEngine {
 public:
  explicit SyncEngine(Engine* engine) : engine_(engine) {}

  absl::StatusOr<ServerInfo> StartServer(ServerSpec spec) {
    return Call<ServerInfo>([&](auto done) {
      engine_->StartServer(std::move(spec), std::move(done));
    });
  }
  absl::StatusOr<StopResult> StopServers(Selector selector,
                                         bool close_connections = false) {
    return Call<StopResult>([&](auto done) {
      engine_->StopServers(std::move(selector), close_connections,
                           std::move(done));
    });
  }
  absl::StatusOr<Page<ServerInfo>> ListServers(ServerFilter filter) {
    return Call<Page<ServerInfo>>([&](auto done) {
      engine_->ListServers(std::move(filter), std::move(done));
    });
  }
  absl::StatusOr<ConnectionInfo> OpenClient(
      ClientSpec spec, absl::Time deadline = absl::InfiniteFuture()) {
    return Call<ConnectionInfo>([&](auto done) {
      engine_->OpenClient(std::move(spec), deadline, std::move(done));
    });
  }
  absl::StatusOr<Page<ConnectionInfo>> ListConnections(
      ConnectionFilter filter) {
    return Call<Page<ConnectionInfo>>([&](auto done) {
      engine_->ListConnections(std::move(filter), std::move(done));
    });
  }
  absl::StatusOr<SendResult> Send(const std::string& id, std::string data) {
    return Call<SendResult>([&](auto done) {
      engine_->Send(id, std::move(data), std::move(done));
    });
  }
  absl::StatusOr<ReceiveResult> Receive(
      const std::string& id, absl::Duration wait = absl::ZeroDuration(),
      size_t max_bytes = 0) {
    ReceiveSpec spec;
    spec.wait = wait;
    spec.max_bytes = max_bytes;
    return Receive(id, spec);
  }
  absl::StatusOr<ReceiveResult> Receive(const std::string& id,
                                        ReceiveSpec spec) {
    return Call<ReceiveResult>(
        [&](auto done) { engine_->Receive(id, spec, std::move(done)); });
  }
  absl::StatusOr<std::vector<ConnectionInfo>> Close(
      Selector selector, CloseMode mode = CloseMode::kGraceful) {
    return Call<std::vector<ConnectionInfo>>([&](auto done) {
      engine_->CloseConnections(std::move(selector), mode, std::move(done));
    });
  }
  absl::StatusOr<std::vector<ConnectionInfo>> Close(
      const std::string& id, CloseMode mode = CloseMode::kGraceful) {
    return Close(Selector{id, {}}, mode);
  }

  // Every connection (closed ones too), following pages.
  std::vector<ConnectionInfo> AllConnections(ConnectionFilter filter = {}) {
    filter.include_closed = true;
    filter.page_size = 1000;
    std::vector<ConnectionInfo> out;
    for (;;) {
      absl::StatusOr<Page<ConnectionInfo>> page = ListConnections(filter);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return out;
      for (auto& c : page->items) out.push_back(std::move(c));
      if (page->next_page_token.empty()) return out;
      filter.page_token = page->next_page_token;
    }
  }
  std::optional<ConnectionInfo> Connection(const std::string& id) {
    for (auto& c : AllConnections()) {
      if (c.id == id) return c;
    }
    return std::nullopt;
  }
  std::vector<ConnectionInfo> ConnectionsOf(const std::string& server_id) {
    ConnectionFilter filter;
    filter.server_id = server_id;
    return AllConnections(filter);
  }
  std::optional<ServerInfo> Server(const std::string& id) {
    ServerFilter filter;
    filter.include_stopped = true;
    filter.page_size = 1000;
    absl::StatusOr<Page<ServerInfo>> page = ListServers(filter);
    if (!page.ok()) return std::nullopt;
    for (auto& s : page->items) {
      if (s.id == id) return s;
    }
    return std::nullopt;
  }

  // Receives until `n` bytes arrived, end of stream, an error or kTimeout.
  absl::StatusOr<std::string> ReceiveExactly(const std::string& id, size_t n) {
    std::string out;
    const absl::Time deadline = absl::Now() + kTimeout;
    while (out.size() < n) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError("test: ReceiveExactly timed out");
      }
      absl::StatusOr<ReceiveResult> r =
          Receive(id, absl::Seconds(1), n - out.size());
      if (!r.ok()) return r.status();
      out += r->data;
      if (r->end_of_stream) break;
    }
    return out;
  }

 private:
  template <typename T, typename Fn>
  absl::StatusOr<T> Call(Fn fn) {
    // Shared: a late answer after a test timeout must not touch freed memory.
    struct State {
      absl::Notification done;
      std::optional<absl::StatusOr<T>> result;
    };
    auto state = std::make_shared<State>();
    fn(Done<absl::StatusOr<T>>([state](absl::StatusOr<T> r) {
      state->result = std::move(r);
      state->done.Notify();
    }));
    if (!state->done.WaitForNotificationWithTimeout(kTimeout)) {
      return absl::DeadlineExceededError("test: the engine did not answer");
    }
    return std::move(*state->result);
  }

  Engine* engine_;
};

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

// Accepts one connection within kTimeout.
inline Fd Accept(int listen_fd) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, absl::ToInt64Milliseconds(kTimeout)) != 1) return Fd();
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

// Reads until EOF (or an error, or kTimeout); `*error` gets errno if any.
inline std::string ReadToEof(int fd, int* error = nullptr) {
  std::string out;
  char buf[65536];
  const absl::Time deadline = absl::Now() + kTimeout;
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

// Reads exactly n bytes (less on EOF, error or kTimeout).
inline std::string ReadExactly(int fd, size_t n) {
  std::string out;
  char buf[65536];
  const absl::Time deadline = absl::Now() + kTimeout;
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

inline bool SendTo(int fd, absl::string_view data, const SocketAddress& to) {
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(to, &ss);
  return ::sendto(fd, data.data(), data.size(), 0,
                  reinterpret_cast<sockaddr*>(&ss),
                  len) == static_cast<ssize_t>(data.size());
}

// One datagram within `timeout`, or nullopt.
inline std::optional<std::string> RecvDatagram(
    int fd, absl::Duration timeout = kTimeout) {
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

// A loopback server spec with port 0.
inline ServerSpec LoopbackServer(BehaviorKind kind,
                                 Transport transport = Transport::kTcp,
                                 const std::string& host = "127.0.0.1") {
  ServerSpec spec;
  spec.transport = transport;
  spec.bind.host = host;
  spec.behavior.kind = kind;
  return spec;
}

inline ClientSpec ClientTo(const SocketAddress& to,
                           Transport transport = Transport::kTcp) {
  ClientSpec spec;
  spec.transport = transport;
  spec.remote.host = to.ip;
  spec.remote.port = std::to_string(to.port);
  return spec;
}

// A fresh engine per test, shut down at the end.
class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeEngine(EngineOptions{}); }
  void MakeEngine(const EngineOptions& options) {
    engine_.reset();
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(options);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    sync_ = std::make_unique<SyncEngine>(engine_.get());
  }
  void TearDown() override {
    sync_.reset();
    if (engine_ != nullptr) engine_->Shutdown();
    engine_.reset();
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<SyncEngine> sync_;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_AGENT_ENGINE_TEST_UTIL_H_
