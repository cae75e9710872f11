// A plain POSIX peer for probes and relays: one poll loop in its own thread
// that echoes (or silently holds) every TCP connection on one loopback
// address and echoes (or swallows) UDP datagrams on another socket of the
// same family. Independent of the engine. Counts the most TCP connections
// it held at once.
//
//   EchoPeer echo(/*echo=*/true);          // 127.0.0.1
//   EchoPeer six(/*echo=*/false, "::1");   // holds, never answers
//   TcpConnect(Ip("127.0.0.1", echo.port()));
#ifndef SOCKAGENT_TESTS_SUPPORT_ECHO_PEER_H_
#define SOCKAGENT_TESTS_SUPPORT_ECHO_PEER_H_

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/posix_peer.h"

namespace sockagent::testing {

class EchoPeer {
 public:
  explicit EchoPeer(bool echo, const std::string& ip = "127.0.0.1")
      : echo_(echo) {
    const SocketAddress any = Ip(ip, 0);
    sockaddr_storage ss;
    const socklen_t len = ToSockaddr(any, &ss);
    listen_ = Fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
    EXPECT_EQ(::listen(listen_.get(), 128), 0);
    port_ = LocalPort(listen_.get());
    udp_ = UdpBound(any.family);
    udp_port_ = LocalPort(udp_.get());
    thread_ = std::thread([this] { Loop(); });
  }
  ~EchoPeer() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return port_; }
  uint16_t udp_port() const { return udp_port_; }
  size_t max_open() const { return max_open_.load(); }
  // TCP connections that sent at least one byte (a TLS client: its hello).
  size_t talkers() const { return talkers_.load(); }

 private:
  void Loop() {
    std::vector<Fd> conns;
    std::set<int> talked;
    while (!stop_) {
      std::vector<pollfd> fds = {{listen_.get(), POLLIN, 0},
                                 {udp_.get(), POLLIN, 0}};
      for (const Fd& c : conns) fds.push_back({c.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[1].revents & POLLIN) {
        char buf[65536];
        sockaddr_storage from;
        socklen_t from_len = sizeof(from);
        const ssize_t n =
            ::recvfrom(udp_.get(), buf, sizeof(buf), 0,
                       reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n >= 0 && echo_) {
          ::sendto(udp_.get(), buf, n, 0, reinterpret_cast<sockaddr*>(&from),
                   from_len);
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[65536];
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof(buf), 0);
        if (n <= 0) {
          talked.erase(fds[i].fd);
          for (Fd& c : conns) {
            if (c.get() == fds[i].fd) c.Reset();
          }
          continue;
        }
        if (talked.insert(fds[i].fd).second) ++talkers_;
        if (echo_) WriteAll(fds[i].fd, absl::string_view(buf, n));
      }
      std::erase_if(conns, [](const Fd& c) { return !c.valid(); });
      // Accepts last: a connection the prober closed before opening this
      // one is seen closed first (its FIN arrived before the new SYN).
      if (fds[0].revents & POLLIN) {
        conns.emplace_back(
            ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        max_open_ = std::max(max_open_.load(), conns.size());
      }
    }
  }

  const bool echo_;
  Fd listen_, udp_;
  uint16_t port_ = 0, udp_port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> max_open_{0};
  std::atomic<size_t> talkers_{0};
  std::thread thread_;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_ECHO_PEER_H_
