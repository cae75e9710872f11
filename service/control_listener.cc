#include "service/control_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "service/fd_budget.h"
#include "service/log.h"
#include "service/malloc_tuning.h"

namespace sockagent {
namespace {

// The listener whose "fd:N" peers DisplayPeer maps (one per daemon).
std::atomic<ControlListener*> g_active{nullptr};

constexpr int kBacklog = 1024;
constexpr int kAcceptsPerWakeup = 256;
// After a connection was cut, its queued calls drain for a while; freed
// memory is given back each second for this long.
constexpr absl::Duration kTrimAfterCut = absl::Seconds(15);
// Lines about refused or cut connections: at most one per interval.
constexpr absl::Duration kRefusalLogInterval = absl::Seconds(5);

absl::Status Failed(const std::string& target, absl::string_view what,
                    int err) {
  std::string cause = strerror(err);
  if (err == EADDRINUSE) {
    cause = "address in use (is another sockagentd serving there?)";
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot listen on ", target, ": ", what, ": ", cause));
}

std::string PeerName(const sockaddr_storage& ss, const std::string& unix_path) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return absl::StrCat("ipv4:", host, ":", ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return absl::StrCat("ipv6:[", host, "]:", ntohs(a->sin6_port));
  }
  return absl::StrCat("unix:", unix_path);
}

uint64_t EpollKey(uint64_t seq, int fd) {
  return (seq << 32) | static_cast<uint32_t>(fd);
}

// A stale socket file (left by a killed daemon) is replaced; anything else
// at the path, or a socket something accepts on, is refused.
absl::Status ClearUnixPath(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Failed("unix:" + path, "lstat", errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on unix:", path,
                     ": the path exists and is not a socket; remove it or "
                     "pass another --listen"));
  }
  absl::Status free = CheckUnixSocketFree(path);
  if (!free.ok()) return free;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Failed("unix:" + path, "removing the stale socket", errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlListener>> ControlListener::Bind(
    const ListenAddress& address, const ControlListenerOptions& options) {
  const std::string target = address.GrpcTarget();
  int fd = -1;
  int port = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  if (!address.unix_path.empty()) {
    absl::Status clear = ClearUnixPath(address.unix_path);
    if (!clear.ok()) return clear;
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (address.unix_path.size() >= sizeof sun.sun_path) {
      return absl::InvalidArgumentError(
          absl::StrCat("UNIX socket path too long: ", address.unix_path));
    }
    memcpy(sun.sun_path, address.unix_path.data(), address.unix_path.size());
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Failed(target, "socket", errno);
    // Owner-only from the start: no window in which another user could
    // connect.
    const mode_t old_umask = umask(0177);
    const int rc = bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun);
    const int bind_errno = errno;
    umask(old_umask);
    if (rc != 0) {
      close(fd);
      return Failed(target, "bind", bind_errno);
    }
    struct stat st;
    if (lstat(address.unix_path.c_str(), &st) != 0 ||
        chmod(address.unix_path.c_str(), 0600) != 0) {
      const int err = errno;
      close(fd);
      return Failed(target, "chmod 0600", err);
    }
    dev = st.st_dev;
    ino = st.st_ino;
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = absl::StrCat(address.port);
    const int gai =
        getaddrinfo(address.host.c_str(), service.c_str(), &hints, &res);
    if (gai != 0 || res == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot listen on ", target, ": ", gai_strerror(gai)));
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                res->ai_protocol);
    if (fd < 0) {
      const int err = errno;
      freeaddrinfo(res);
      return Failed(target, "socket", err);
    }
    // SO_REUSEADDR lets a restarted daemon bind over TIME_WAIT leftovers;
    // no SO_REUSEPORT (gRPC sets it by default), so a second daemon on the
    // same address fails instead of sharing the port.
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (res->ai_family == AF_INET6) {
      // "[::]" serves IPv4 too, as gRPC's listener does.
      const auto* a6 = reinterpret_cast<const sockaddr_in6*>(res->ai_addr);
      const int v6only = IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ? 0 : 1;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    const int rc = bind(fd, res->ai_addr, res->ai_addrlen);
    const int bind_errno = errno;
    freeaddrinfo(res);
    if (rc != 0) {
      close(fd);
      return Failed(target, "bind", bind_errno);
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    port = ss.ss_family == AF_INET6
               ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
               : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  if (listen(fd, kBacklog) != 0) {
    const int err = errno;
    close(fd);
    return Failed(target, "listen", err);
  }
  auto listener =
      std::unique_ptr<ControlListener>(new ControlListener(fd, options));
  listener->port_ = port;
  listener->unix_path_ = address.unix_path;
  listener->unix_dev_ = dev;
  listener->unix_ino_ = ino;
  if ((address.unix_path.empty() && options.relay_tcp) ||
      options.relay.tls != nullptr) {
    ControlListener* self = listener.get();
    listener->relay_ = std::make_unique<ControlRelay>(
        options.relay,
        [self](int key, uint64_t seq, absl::string_view why) {
          self->OnRelayCut(key, seq, why);
        },
        [self](int key, uint64_t seq, absl::string_view what) {
          self->OnTlsFailure(key, seq, what);
        },
        [self](int key, uint64_t seq, absl::string_view client_cn) {
          self->OnTlsClient(key, seq, client_cn);
        });
  }
  if (listener->epoll_fd_ < 0 || listener->wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat(
        "cannot listen on ", target, ": epoll/eventfd: ", strerror(errno)));
  }
  return listener;
}

ControlListener::ControlListener(int fd, const ControlListenerOptions& options)
    : options_(options), listen_fd_(fd) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (epoll_fd_ >= 0 && wake_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = EpollKey(0, listen_fd_);
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.u64 = EpollKey(0, wake_fd_);
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  }
}

ControlListener::~ControlListener() {
  Stop();
  // Relayed connections end here (after gRPC's Shutdown, in the daemon).
  relay_.reset();
  ControlListener* self = this;
  g_active.compare_exchange_strong(self, nullptr);
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, conn] : conns_) close(conn.watch_fd);
    conns_.clear();
  }
  for (int fd : {listen_fd_, epoll_fd_, wake_fd_, spare_fd_}) {
    if (fd >= 0) close(fd);
  }
  // Only the socket this process bound: not a file that replaced it.
  if (!unix_path_.empty()) {
    struct stat st;
    if (lstat(unix_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == unix_dev_ && st.st_ino == unix_ino_) {
      unlink(unix_path_.c_str());
    }
  }
}

void ControlListener::Start(std::function<void(int fd)> hand_off) {
  hand_off_ = std::move(hand_off);
  g_active.store(this);
  if (relay_ != nullptr) relay_->Start();
  thread_ = std::thread([this] { Loop(); });
}

void ControlListener::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  // New connections are refused from now on.
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
  }
}

size_t ControlListener::connections() {
  absl::MutexLock lock(&mu_);
  return conns_.size();
}

void ControlListener::Loop() {
  epoll_event events[64];
  while (true) {
    const int n = epoll_wait(epoll_fd_, events, 64, 1000);
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      const int fd = static_cast<int>(key & 0xffffffffu);
      if (key >> 32 == 0 && fd == wake_fd_) return;
      if (key >> 32 == 0 && fd == listen_fd_) {
        AcceptReady();
        continue;
      }
      // A connection hung up (peer closed, or gRPC or we shut it down).
      absl::MutexLock lock(&mu_);
      auto it = conns_.find(fd);
      if (it != conns_.end() && it->second.seq == key >> 32) {
        close(it->second.watch_fd);
        conns_.erase(it);
      }
    }
    bool trim = false;
    {
      absl::MutexLock lock(&mu_);
      trim = absl::Now() - last_cut_ < kTrimAfterCut;
    }
    // Resets held back by the agent-wide bucket: calls are draining too.
    if (relay_ != nullptr &&
        absl::Now() - relay_->last_throttled() < kTrimAfterCut) {
      trim = true;
    }
    if (trim) ReleaseFreedMemory();
  }
}

void ControlListener::AcceptReady() {
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      Admit(fd, PeerName(ss, unix_path_));
      continue;
    }
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err == EMFILE || err == ENFILE) {
      LogDescriptorExhaustion("control_accept", err);
      // Refuse the pending connection through the spare descriptor, so the
      // listen queue does not keep waking us.
      if (spare_fd_ >= 0) {
        close(spare_fd_);
        const int victim = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (victim >= 0) close(victim);
        spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      return;
    }
    // ECONNABORTED, EINTR, EPROTO...: the next one.
  }
}

void ControlListener::Admit(int client_fd, std::string address) {
  // Relayed: gRPC gets C of a socketpair (B, C); the relay copies between
  // the client's socket and B.
  int fd = client_fd;
  int relay_fd = -1;
  if (relay_ != nullptr) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   pair) != 0) {
      LogDescriptorExhaustion("control_accept", errno);
      close(client_fd);
      return;
    }
    relay_fd = pair[0];
    fd = pair[1];
  }
  auto drop = [&] {
    close(fd);
    if (relay_fd >= 0) {
      close(relay_fd);
      close(client_fd);
    }
  };
  const int watch = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (watch < 0) {
    LogDescriptorExhaustion("control_accept", errno);
    drop();
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    // A descriptor number gRPC closed and the kernel gave out again: the old
    // connection is gone.
    if (auto old = conns_.find(fd); old != conns_.end()) {
      close(old->second.watch_fd);
      conns_.erase(old);
    }
    size_t active = 0;
    int victim = -1;
    uint64_t victim_seq = UINT64_MAX;
    for (auto& [key, conn] : conns_) {
      if (conn.cut) continue;
      ++active;
      if (!conn.authenticated->load() && conn.seq < victim_seq) {
        victim = key;
        victim_seq = conn.seq;
      }
    }
    if (active >= options_.max_connections) {
      const absl::Time now = absl::Now();
      ++refusals_;
      const bool log = now - last_refusal_log_ >= kRefusalLogInterval;
      if (log) last_refusal_log_ = now;
      if (victim < 0) {
        if (log) {
          LogEvent(LogLevel::kWarn, "control_connection_limit",
                   {{"limit", absl::StrCat(options_.max_connections)},
                    {"action", "refused"},
                    {"peer", address},
                    {"count", absl::StrCat(refusals_)},
                    {"msg",
                     "every control connection is authenticated; the new "
                     "one is closed (--max-control-connections)"}});
        }
        close(watch);
        drop();
        return;
      }
      Conn& old = conns_[victim];
      if (log) {
        LogEvent(LogLevel::kWarn, "control_connection_limit",
                 {{"limit", absl::StrCat(options_.max_connections)},
                  {"action", "evicted"},
                  {"peer", old.address},
                  {"count", absl::StrCat(refusals_)},
                  {"msg",
                   "closed the oldest control connection without an "
                   "authenticated call to admit a new one "
                   "(--max-control-connections)"}});
      }
      shutdown(old.watch_fd, SHUT_RDWR);
      close(old.watch_fd);
      conns_.erase(victim);
    }
    const uint64_t seq = ++next_seq_;
    epoll_event ev{};
    ev.events = EPOLLRDHUP;
    ev.data.u64 = EpollKey(seq, fd);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, watch, &ev) != 0) {
      close(watch);
      drop();
      return;
    }
    Conn& conn = conns_[fd];
    conn.watch_fd = watch;
    conn.address = std::move(address);
    conn.seq = seq;
    conn.window_start = absl::Now();
    conn.authenticated = std::make_shared<std::atomic<bool>>(false);
    if (relay_ != nullptr) {
      relay_->Add(client_fd, relay_fd, fd, seq, conn.authenticated);
    }
  }
  hand_off_(fd);
}

void ControlListener::CutLocked(int key, Conn& conn, absl::string_view reason) {
  conn.cut = true;
  last_cut_ = absl::Now();
  shutdown(conn.watch_fd, SHUT_RDWR);
  const absl::Time now = absl::Now();
  ++refusals_;
  if (now - last_refusal_log_ >= kRefusalLogInterval) {
    last_refusal_log_ = now;
    LogEvent(LogLevel::kWarn, "control_connection_cut",
             {{"peer", conn.address},
              {"reason", std::string(reason)},
              {"count", absl::StrCat(refusals_)}});
  }
  (void)key;
}

void ControlListener::OnRelayCut(int key, uint64_t seq,
                                 absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  auto it = conns_.find(key);
  if (it == conns_.end() || it->second.seq != seq || it->second.cut) return;
  CutLocked(key, it->second, reason);
}

void ControlListener::OnCallEnded(absl::string_view peer, bool cancelled,
                                  bool authenticated) {
  int key = -1;
  if (!absl::ConsumePrefix(&peer, "fd:") || !absl::SimpleAtoi(peer, &key)) {
    return;
  }
  absl::MutexLock lock(&mu_);
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  Conn& conn = it->second;
  if (authenticated) conn.authenticated->store(true);
  if (!cancelled || conn.cut) return;
  const absl::Time now = absl::Now();
  if (now - conn.window_start >= absl::Seconds(1)) {
    conn.window_start = now;
    conn.window_cancels = 0;
  }
  if (++conn.window_cancels > options_.max_cancels_per_second) {
    CutLocked(key, conn,
              absl::StrCat("more than ", options_.max_cancels_per_second,
                           " calls cancelled within a second (HTTP/2 rapid "
                           "reset?)"));
  }
}

void ControlListener::OnCallAuthenticated(absl::string_view peer) {
  int key = -1;
  if (!absl::ConsumePrefix(&peer, "fd:") || !absl::SimpleAtoi(peer, &key)) {
    return;
  }
  absl::MutexLock lock(&mu_);
  auto it = conns_.find(key);
  if (it != conns_.end()) it->second.authenticated->store(true);
}

void ControlListener::OnTlsFailure(int key, uint64_t seq,
                                   absl::string_view what) {
  std::string address = "unknown";
  {
    absl::MutexLock lock(&mu_);
    auto it = conns_.find(key);
    if (it != conns_.end() && it->second.seq == seq) {
      address = it->second.address;
    }
  }
  const LogLimiter::Decision d = tls_log_.Admit(PeerIp(address), absl::Now());
  if (!d.log) return;
  LogEvent(LogLevel::kWarn, "tls_handshake_failure",
           {{"peer", address},
            {"msg", std::string(what)},
            {"suppressed", absl::StrCat(d.suppressed)}});
}

void ControlListener::OnTlsClient(int key, uint64_t seq,
                                  absl::string_view client_cn) {
  absl::MutexLock lock(&mu_);
  auto it = conns_.find(key);
  if (it != conns_.end() && it->second.seq == seq) {
    it->second.client_cn = std::string(client_cn);
  }
}

std::string ControlListener::PeerClientCn(absl::string_view peer) {
  absl::string_view rest = peer;
  int key = -1;
  if (absl::ConsumePrefix(&rest, "fd:") && absl::SimpleAtoi(rest, &key)) {
    absl::MutexLock lock(&mu_);
    auto it = conns_.find(key);
    if (it != conns_.end()) return it->second.client_cn;
  }
  return "";
}

std::string ControlListener::PeerAddress(absl::string_view peer) {
  absl::string_view rest = peer;
  int key = -1;
  if (absl::ConsumePrefix(&rest, "fd:") && absl::SimpleAtoi(rest, &key)) {
    absl::MutexLock lock(&mu_);
    auto it = conns_.find(key);
    if (it != conns_.end()) return it->second.address;
  }
  return std::string(peer);
}

std::string DisplayPeer(absl::string_view grpc_peer) {
  ControlListener* active = g_active.load();
  return active != nullptr ? active->PeerAddress(grpc_peer)
                           : std::string(grpc_peer);
}

std::string DisplayClientCn(absl::string_view grpc_peer) {
  ControlListener* active = g_active.load();
  return active != nullptr ? active->PeerClientCn(grpc_peer) : "";
}

}  // namespace sockagent
