// EngineImpl, servers: binding (dual stack, every resolved address, UNIX
// paths), draining the accept queue, behaviours on accept, UDP sockets with
// per-peer sessions, TTL, and stopping. Loop thread only.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/descriptor_exhaustion.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"
#include "agent/quote.h"

namespace sockagent {
namespace engine_internal {

namespace {

// Accepts per readiness wakeup before yielding to other sockets. The loop
// drains the listen queue (TOOLCHAIN.md: one accept per wakeup overflowed it
// under a burst of connects).
constexpr int kAcceptsPerWakeup = 256;
// Back-off when accept fails for lack of descriptors or memory (the pending
// connection stays queued, so re-arming at once would spin), or when
// waiting on a UDP socket fails.
constexpr absl::Duration kAcceptRetry = absl::Milliseconds(100);
// Port-0 servers on several addresses retry when the port the first socket
// got is taken on another address.
constexpr int kMaxPortRetries = 8;
// Largest UDP payload over IPv4.
constexpr size_t kMaxDatagram = 65507;
// Receive buffer asked for on UDP server sockets. The default (~208 KiB)
// absorbs only ~150 datagrams of 1400 bytes: a burst longer than one loop
// wakeup lost 60 % of them under load (benchmark 2, BENCHMARKS.md). The
// kernel caps it at net.core.rmem_max (4 MiB on Debian 12); this is kernel
// memory, taken only as datagrams queue up.
constexpr int kUdpReceiveBufferBytes = 4 << 20;
// Datagrams taken per recvmmsg call on a UDP server socket.
constexpr int kUdpBatch = 16;
constexpr size_t kUdpSlotBytes = 64 * 1024;  // >= kMaxDatagram: no truncation.
static_assert(kUdpSlotBytes >= kMaxDatagram);

// The loop thread's recvmmsg buffers. One syscall then takes up to
// kUdpBatch datagrams instead of one: per-datagram recvfrom cost ~12 % of
// the agent's CPU under a UDP flood (BENCHMARKS.md, benchmark 2). The slots
// are 1 MiB of address space, allocated without being written, so only the
// pages datagrams actually reach become resident.
struct UdpBatch {
  std::unique_ptr<char[]> data{new char[kUdpBatch * kUdpSlotBytes]};
  mmsghdr msgs[kUdpBatch];
  iovec iov[kUdpBatch];
  sockaddr_storage from[kUdpBatch];

  // Receives up to `want` (<= kUdpBatch) datagrams without blocking;
  // returns how many, or -1 with errno.
  int Receive(int fd, int want) {
    for (int i = 0; i < want; ++i) {
      iov[i] = {data.get() + i * kUdpSlotBytes, kUdpSlotBytes};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    return recvmmsg(fd, msgs, static_cast<unsigned>(want), MSG_DONTWAIT,
                    nullptr);
  }
};

UdpBatch& LoopUdpBatch() {
  thread_local UdpBatch batch;
  return batch;
}

absl::Status ValidateServerSpec(const ServerSpec& spec,
                                const EngineOptions& options) {
  if (spec.transport == Transport::kUnix) {
    if (!spec.bind.host.empty() || !spec.bind.port.empty()) {
      return absl::InvalidArgumentError(
          "a UNIX server takes unix_path only, not host or port");
    }
    if (spec.family != Family::kUnspecified && spec.family != Family::kUnix) {
      return absl::InvalidArgumentError(
          "a UNIX server cannot use an IP family");
    }
    if (absl::Status s = CheckUnixPathSyntax(spec.bind.unix_path); !s.ok()) {
      return s;
    }
  } else {
    if (!spec.bind.unix_path.empty()) {
      return absl::InvalidArgumentError("unix_path is for UNIX servers only");
    }
    if (spec.family == Family::kUnix) {
      return absl::InvalidArgumentError("family UNIX needs transport UNIX");
    }
  }
  if (spec.backlog < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backlog ", spec.backlog, " is negative"));
  }
  if (spec.ttl < absl::ZeroDuration() ||
      spec.idle_timeout < absl::ZeroDuration() ||
      spec.udp_session_idle_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("durations must not be negative");
  }
  if (spec.behavior.kind == BehaviorKind::kGreeting) {
    const size_t limit = spec.transport == Transport::kUdp
                             ? kMaxDatagram
                             : options.send_buffer_bytes;
    if (spec.behavior.greeting.size() > limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("greeting of ", spec.behavior.greeting.size(),
                       " bytes is above the limit of ", limit, " bytes"));
    }
  }
  return absl::OkStatus();
}

// `greeting` is the spec's, taken out of it once (spec.behavior.greeting is
// empty by now): every attempt shares it.
std::unique_ptr<Server> NewServer(
    const ServerSpec& spec, const EngineOptions& options,
    const std::shared_ptr<const std::string>& greeting) {
  auto s = std::make_unique<Server>();
  ServerInfo& info = s->info;
  info.transport = spec.transport;
  info.behavior = spec.behavior;
  info.behavior.greeting.clear();
  if (!greeting->empty()) s->greeting = greeting;
  info.backlog = spec.backlog == 0 ? asio::socket_base::max_listen_connections
                                   : spec.backlog;
  info.ttl = spec.ttl;
  info.idle_timeout = spec.idle_timeout;
  info.stopped_at = absl::InfinitePast();
  if (spec.transport == Transport::kUdp) {
    info.udp_max_sessions = spec.udp_max_sessions == 0
                                ? options.max_udp_sessions_per_server
                                : std::min(spec.udp_max_sessions,
                                           options.max_udp_sessions_per_server);
    info.udp_session_idle_timeout =
        spec.udp_session_idle_timeout > absl::ZeroDuration()
            ? spec.udp_session_idle_timeout
            : options.udp_session_idle_timeout;
    info.udp_reply = EffectiveUdpReplyLimits(options.udp_reply, spec.udp_reply);
    if (spec.behavior.kind == BehaviorKind::kEcho ||
        spec.behavior.kind == BehaviorKind::kGreeting) {
      s->reply_budget = std::make_unique<UdpReplyBudget>(info.udp_reply);
    }
  }
  if (!spec.labels.empty()) {
    s->labels = std::make_shared<const Labels>(spec.labels);
  }
  return s;
}

bool IsTransientAcceptError(const asio::error_code& ec) {
  // The client gave up before we accepted, or a signal: just go on.
  return ec == asio::error::connection_aborted ||
         ec == asio::error::interrupted ||
         (ec.category() == asio::error::get_system_category() &&
          (ec.value() == EPROTO || ec.value() == ECONNRESET));
}

}  // namespace

void EngineImpl::DoStartServer(ServerSpec spec,
                               Done<absl::StatusOr<ServerInfo>> done) {
  if (absl::Status s = ValidateServerSpec(spec, options_); !s.ok()) {
    done(s);
    return;
  }
  if (registry_.listening_servers() >= options_.max_servers) {
    done(absl::ResourceExhaustedError(
        absl::StrCat("max_servers (", options_.max_servers,
                     ") reached: stop a server first")));
    return;
  }
  // Kept once, shared by the server and its history record.
  auto greeting =
      std::make_shared<const std::string>(std::move(spec.behavior.greeting));
  spec.behavior.greeting.clear();
  if (spec.transport == Transport::kUnix) {
    // BindUnix checks the policy on the resolved path.
    std::unique_ptr<Server> s = NewServer(spec, options_, greeting);
    if (absl::Status st = BindUnix(*s, spec); !st.ok()) {
      done(st);
      return;
    }
    ActivateServer(std::move(s), std::move(done));
    return;
  }
  LookupQuery query;
  query.host = spec.bind.host;
  query.port = spec.bind.port;
  query.transport = spec.transport;
  query.family = spec.family;
  query.passive = true;
  Resolve(
      std::move(query), absl::InfiniteFuture(),
      [this, spec = std::move(spec), greeting = std::move(greeting),
       done = std::move(done)](absl::StatusOr<IpEndpoints> endpoints) mutable {
        if (shutting_down_) {
          done(ShuttingDownError());
        } else if (!endpoints.ok()) {
          done(endpoints.status());
        } else {
          BindIpServer(std::move(spec), greeting, *endpoints, std::move(done));
        }
      });
}

void EngineImpl::BindIpServer(
    ServerSpec spec, const std::shared_ptr<const std::string>& greeting,
    const IpEndpoints& endpoints, Done<absl::StatusOr<ServerInfo>> done) {
  // The policy sees resolved addresses and ports: a name or a service name
  // cannot hide a forbidden one. Any forbidden address refuses the server.
  for (const asio::ip::tcp::endpoint& e : endpoints) {
    if (absl::Status st =
            options_.policy.CheckBind(e.address().to_string(), e.port());
        !st.ok()) {
      done(st);
      return;
    }
  }
  // Checked again: other servers may have started during the lookup.
  if (registry_.listening_servers() >= options_.max_servers) {
    done(absl::ResourceExhaustedError(
        absl::StrCat("max_servers (", options_.max_servers,
                     ") reached: stop a server first")));
    return;
  }
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Server> s = NewServer(spec, options_, greeting);
    bool retry = false;
    absl::Status status = BindAll(*s, spec, endpoints, &retry);
    if (status.ok()) {
      ActivateServer(std::move(s), std::move(done));
      return;
    }
    if (!retry || attempt + 1 >= kMaxPortRetries) {
      done(status);
      return;
    }
  }
}

absl::Status EngineImpl::BindAll(Server& s, const ServerSpec& spec,
                                 const IpEndpoints& endpoints, bool* retry) {
  const bool any_zero = std::any_of(
      endpoints.begin(), endpoints.end(),
      [](const asio::ip::tcp::endpoint& e) { return e.port() == 0; });
  // "" with any family: a host without IPv6 still gets its IPv4 socket.
  const bool v6_optional =
      spec.bind.host.empty() && spec.family == Family::kUnspecified;
  uint16_t chosen = 0;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    asio::ip::tcp::endpoint ep = endpoints[i];
    if (ep.port() == 0 && chosen != 0) ep.port(chosen);
    const std::string where =
        ToSocketAddress(ep.address(), ep.port()).ToString();
    const bool v6 = ep.address().is_v6();
    asio::error_code ec;
    PackedAddress local;
    if (spec.transport == Transport::kTcp) {
      auto listener = std::make_unique<Listener>(io_);
      StreamAcceptor& a = listener->acceptor;
      a.open(StreamProtocol(ep.protocol()), ec);
      if (ec) {
        if (v6 && v6_optional &&
            ec == asio::error::address_family_not_supported) {
          continue;
        }
        return ErrorStatus(absl::StrCat("socket for ", where), ec);
      }
      if (spec.reuse_address) {
        a.set_option(asio::socket_base::reuse_address(true), ec);
        if (ec) return ErrorStatus(absl::StrCat("SO_REUSEADDR on ", where), ec);
      }
      if (v6) {
        // Dual stack is two sockets; [::] must not take the IPv4 port too.
        a.set_option(asio::ip::v6_only(true), ec);
        if (ec) return ErrorStatus(absl::StrCat("IPV6_V6ONLY on ", where), ec);
      }
      a.bind(StreamProtocol::endpoint(ep), ec);
      if (ec) {
        *retry = any_zero && chosen != 0 && ec == asio::error::address_in_use;
        return ErrorStatus(absl::StrCat("bind ", where), ec);
      }
      a.listen(s.info.backlog, ec);
      if (ec) return ErrorStatus(absl::StrCat("listen ", where), ec);
      a.non_blocking(true, ec);
      if (ec) return ErrorStatus(absl::StrCat("non-blocking ", where), ec);
      const StreamProtocol::endpoint bound = a.local_endpoint(ec);
      if (ec) return ErrorStatus(absl::StrCat("getsockname ", where), ec);
      local = PackedAddress::FromKernel(bound.data(), bound.size());
      if (!ep.address().is_unspecified()) listener->fixed_local = local;
      s.listeners.push_back(std::move(listener));
    } else {
      auto socket = std::make_unique<UdpServerSocket>(io_);
      UdpSocket& u = socket->socket;
      u.open(v6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), ec);
      if (ec) {
        if (v6 && v6_optional &&
            ec == asio::error::address_family_not_supported) {
          continue;
        }
        return ErrorStatus(absl::StrCat("socket for ", where), ec);
      }
      // No SO_REUSEADDR: on UDP it would let a second socket bind this
      // port and take a share of its datagrams.
      if (v6) {
        u.set_option(asio::ip::v6_only(true), ec);
        if (ec) return ErrorStatus(absl::StrCat("IPV6_V6ONLY on ", where), ec);
      }
      // Best effort: a smaller buffer only means earlier drops.
      u.set_option(
          asio::socket_base::receive_buffer_size(kUdpReceiveBufferBytes), ec);
      u.bind(asio::ip::udp::endpoint(ep.address(), ep.port()), ec);
      if (ec) {
        *retry = any_zero && chosen != 0 && ec == asio::error::address_in_use;
        return ErrorStatus(absl::StrCat("bind ", where), ec);
      }
      u.non_blocking(true, ec);
      if (ec) return ErrorStatus(absl::StrCat("non-blocking ", where), ec);
      const asio::ip::udp::endpoint bound = u.local_endpoint(ec);
      if (ec) return ErrorStatus(absl::StrCat("getsockname ", where), ec);
      local = PackedAddress::Ip(bound.address(), bound.port());
      socket->local = local;
      s.udp_sockets.push_back(std::move(socket));
    }
    if (chosen == 0) chosen = local.port();
    s.info.local_addresses.push_back(local.Unpack());
  }
  if (s.listeners.empty() && s.udp_sockets.empty()) {
    return absl::InvalidArgumentError("no address to bind");
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::BindUnix(Server& s, const ServerSpec& spec) {
  const std::string& path = spec.bind.unix_path;
  const std::string where = absl::StrCat("unix:", path);
  auto listener = std::make_unique<Listener>(io_);
  StreamAcceptor& a = listener->acceptor;
  asio::error_code ec;
  a.open(StreamProtocol(AF_UNIX, 0), ec);
  if (ec) return ErrorStatus(absl::StrCat("socket for ", where), ec);
  // An existing file (stale or live) is AlreadyExists: we never unlink what
  // we did not create, except a dead socket when the caller asks for it.
  absl::StatusOr<std::unique_ptr<BoundUnixFile>> file =
      BindUnixSocket(a.native_handle(), path, options_.policy,
                     UnixBindOptions{.replace_stale = spec.replace_stale});
  if (!file.ok()) return file.status();
  // The file is ours now: a failure below must not leave it behind.
  absl::Cleanup remove_file = [&file] {
    if (*file != nullptr) (*file)->Unlink();
  };
  a.listen(s.info.backlog, ec);
  if (ec) return ErrorStatus(absl::StrCat("listen ", where), ec);
  a.non_blocking(true, ec);
  if (ec) return ErrorStatus(absl::StrCat("non-blocking ", where), ec);
  std::move(remove_file).Cancel();
  s.unix_file = *std::move(file);
  s.unix_path = std::make_shared<const std::string>(path);
  // What bind was given is /proc/self/fd/N/NAME: report the caller's path.
  listener->fixed_local = PackedAddress::Unix(s.unix_path);
  s.info.local_addresses.push_back(listener->fixed_local->Unpack());
  s.listeners.push_back(std::move(listener));
  return absl::OkStatus();
}

void EngineImpl::ActivateServer(std::unique_ptr<Server> server,
                                Done<absl::StatusOr<ServerInfo>> done) {
  Server& s = registry_.AddServer(std::move(server));
  s.info.id = ServerId(s.num);
  s.info.state = ServerState::kListening;
  s.info.created_at = absl::Now();
  for (size_t i = 0; i < s.listeners.size(); ++i) ArmAccept(s, i);
  for (size_t i = 0; i < s.udp_sockets.size(); ++i) ArmUdpRead(s, i);
  if (s.info.ttl > absl::ZeroDuration()) {
    s.ttl_timer = std::make_unique<Timer>(io_, ToSteady(s.info.ttl));
    s.ttl_timer->async_wait(
        Locked([this, num = s.num](const asio::error_code& ec) {
          if (ec) return;
          Server* found = FindServer(num);
          if (found == nullptr || found->stopped()) return;
          StopServer(*found, "ttl expired", CloseReason::kTtlExpired, nullptr);
        }));
  }
  Emit(EventKind::kServerStarted, s.num, 0);
  done(Snapshot(s));
}

void EngineImpl::ArmAccept(Server& s, size_t index) {
  s.listeners[index]->acceptor.async_wait(
      StreamAcceptor::wait_read,
      Locked([this, num = s.num, index](const asio::error_code& ec) {
        OnAcceptReady(num, index, ec);
      }));
}

void EngineImpl::OnAcceptReady(uint64_t server_num, size_t index,
                               const asio::error_code& ec) {
  Server* s = FindServer(server_num);
  if (s == nullptr || s->stopped() || ec == asio::error::operation_aborted) {
    return;
  }
  Listener& listener = *s->listeners[index];
  asio::error_code error = ec;
  // accept4 on the descriptor rather than Asio's accept: the socket comes
  // non-blocking and close-on-exec in one call (Asio's accept makes it
  // blocking and inheritable), and only the connections that need the
  // reactor are registered with it (OnAccepted).
  const int listen_fd = listener.acceptor.native_handle();
  for (int i = 0; i < kAcceptsPerWakeup && !error; ++i) {
    sockaddr_storage remote;
    socklen_t remote_len = sizeof remote;
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&remote),
                             &remote_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      error = asio::error_code(errno, asio::error::get_system_category());
      if (IsWouldBlock(error)) {
        error.clear();
        break;
      }
      if (IsTransientAcceptError(error)) {
        error.clear();
        continue;
      }
      break;
    }
    OnAccepted(*s, listener, fd, remote, remote_len);
  }
  if (!error) {
    ArmAccept(*s, index);
    return;
  }
  // Out of descriptors or memory (or stranger): back off, then try again.
  ReportDescriptorExhaustion("engine_accept", error.value());
  Emit(EventKind::kError, server_num, 0, 0, {},
       absl::StrCat("accept failed: ", error.message(), "; retrying"));
  listener.retry = std::make_unique<Timer>(io_, ToSteady(kAcceptRetry));
  listener.retry->async_wait(
      Locked([this, server_num, index](const asio::error_code& e) {
        if (e) return;
        Server* found = FindServer(server_num);
        if (found != nullptr && !found->stopped()) ArmAccept(*found, index);
      }));
}

void EngineImpl::OnAccepted(Server& s, const Listener& listener, int fd,
                            const sockaddr_storage& remote,
                            socklen_t remote_len) {
  const Behavior& b = s.info.behavior;
  // A greeting would be queued at once: it must fit the agent-wide bound.
  const uint64_t greeting =
      b.kind == BehaviorKind::kGreeting && s.greeting != nullptr
          ? s.greeting->size()
          : 0;
  if (AtConnectionLimit() || greeting > TotalRoom()) {
    // Refuse with RST so the client learns at once.
    ++s.info.counters.connections_rejected;
    CloseDescriptor(fd, /*abort=*/true);
    Emit(EventKind::kError, s.num, 0, 0, {},
         "connection refused: agent connection or buffer limit reached");
    return;
  }
  auto conn = std::make_unique<Conn>();
  conn->num = NewConnNum();
  conn->server_num = s.num;
  conn->transport = s.info.transport;
  conn->origin = Origin::kAccepted;
  conn->behavior = b.kind;
  conn->labels = s.labels;
  if (listener.fixed_local.has_value()) {
    conn->local = *listener.fixed_local;
  } else {
    sockaddr_storage local;
    socklen_t local_len = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) ==
        0) {
      conn->local = PackedAddress::FromKernel(&local, local_len);
    }
  }
  // accept4 reported the peer (an unnamed UNIX peer has no path).
  conn->remote = PackedAddress::FromKernel(&remote, remote_len);
  if (s.info.transport == Transport::kUnix &&
      conn->remote.family() != Family::kUnix) {
    conn->remote = PackedAddress::Unix(nullptr);
  }
  conn->raw_fd = fd;  // Owned by the record from here on (Finalize).
  Conn& c = AddConn(std::move(conn));
  ++s.info.counters.connections_accepted;
  ++s.info.counters.connections_active;
  Emit(EventKind::kConnectionAccepted, s.num, c.num);
  c.opened_at = absl::Now();
  // Of the greeting, the bytes written before the reactor takes over.
  size_t greeted = 0;
  if (b.kind == BehaviorKind::kGreeting && b.close_after_greeting &&
      options_.close_linger > absl::ZeroDuration() &&
      GreetAndClose(s, c, &greeted)) {
    return;
  }
  if (!AdoptSocket(c)) return;
  StartConnection(c, absl::ZeroDuration(), s.info.idle_timeout);
  if (b.kind == BehaviorKind::kGreeting) {
    if (s.greeting != nullptr) {
      c.send_bytes.Append(absl::string_view(*s.greeting).substr(greeted));
    }
    c.counters.send_buffered = c.send_bytes.size();
    c.counters.send_buffered_peak = c.counters.send_buffered;
    Recharge(c);
    if (b.close_after_greeting) {
      StartClose(c, CloseReason::kLocalClose, "greeting sent", /*abort=*/false);
    } else {
      Flush(c);
    }
  }
}

// The seed's server, made cheap: greeting and FIN leave at accept, and the
// socket waits outside the reactor for the peer's answer (a quick tail, see
// CheckQuickTails). Per connection that is accept4, send, shutdown, one
// recv about 10 ms later and close, where the reactor path costs an
// ioctl, three epoll_ctl, a share of the epoll wakeups and a timer.
bool EngineImpl::GreetAndClose(Server& s, Conn& c, size_t* greeted) {
  const int fd = c.raw_fd;
  if (s.greeting != nullptr) {
    const std::string& g = *s.greeting;
    // MSG_MORE holds the greeting back for the FIN: both leave in one
    // segment, which the peer acknowledges once, instead of two segments
    // and two ACKs (on loopback all of that runs on our CPU time).
    const ssize_t n = ::send(fd, g.data(), g.size(), MSG_NOSIGNAL | MSG_MORE);
    if (n > 0) {
      *greeted = static_cast<size_t>(n);
      c.counters.bytes_sent += *greeted;
      s.info.counters.bytes_sent += *greeted;
      Emit(EventKind::kDataSent, s.num, c.num, *greeted);
    }
    // A full socket buffer or an error: the reactor path writes the rest
    // (and reports the error).
    if (*greeted != g.size()) return false;
  }
  MarkClosed(c, CloseReason::kLocalClose, "greeting sent");
  c.fin_wanted = true;
  if (::shutdown(fd, SHUT_WR) != 0) {
    asio::error_code ec(errno, asio::error::get_system_category());
    // As in SendFin: not connected any more means the peer reset first.
    if (ec == asio::error::not_connected) ec = asio::error::connection_reset;
    OnStreamError(c, ec, "shutdown");
    return true;
  }
  c.fin_sent = true;
  quick_tails_.push_back(QuickTail{c.num, SteadyNowNs()});
  ArmQuickTailTimer();
  return true;
}

void EngineImpl::ArmUdpRead(Server& s, size_t index) {
  s.udp_sockets[index]->socket.async_wait(
      UdpSocket::wait_read,
      Locked([this, num = s.num, index](const asio::error_code& ec) {
        OnUdpReadable(num, index, ec);
      }));
}

void EngineImpl::OnUdpReadable(uint64_t server_num, size_t index,
                               const asio::error_code& ec) {
  Server* s = FindServer(server_num);
  if (s == nullptr || s->stopped() || ec == asio::error::operation_aborted) {
    return;
  }
  if (ec) {
    // Strange, but the server must not go deaf for good: try again later.
    Emit(EventKind::kError, server_num, 0, 0, {},
         absl::StrCat("udp receive failed: ", ec.message(), "; retrying"));
    UdpServerSocket& u = *s->udp_sockets[index];
    u.retry = std::make_unique<Timer>(io_, ToSteady(kAcceptRetry));
    u.retry->async_wait(
        Locked([this, server_num, index](const asio::error_code& e) {
          if (e) return;
          Server* found = FindServer(server_num);
          if (found != nullptr && !found->stopped()) ArmUdpRead(*found, index);
        }));
    return;
  }
  UdpBatch& batch = LoopUdpBatch();
  const int fd = s->udp_sockets[index]->socket.native_handle();
  for (int budget = kDatagramsPerWakeup; budget > 0;) {
    const int n = batch.Receive(fd, std::min(budget, kUdpBatch));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      --budget;  // A stale ICMP error for an earlier reply; keep reading.
      continue;
    }
    budget -= n;
    for (int i = 0; i < n; ++i) {
      asio::ip::udp::endpoint from;
      const socklen_t len = batch.msgs[i].msg_hdr.msg_namelen;
      if (len > from.capacity()) continue;
      std::memcpy(from.data(), &batch.from[i], len);
      from.resize(len);
      OnDatagram(*s, index, from, batch.data.get() + i * kUdpSlotBytes,
                 batch.msgs[i].msg_len);
    }
    if (n < std::min(budget + n, kUdpBatch)) break;  // Drained for now.
  }
  ArmUdpRead(*s, index);
}

void EngineImpl::OnDatagram(Server& s, size_t index,
                            const asio::ip::udp::endpoint& from,
                            const char* data, size_t n) {
  ServerCounters& counters = s.info.counters;
  ++counters.datagrams_received;
  counters.bytes_received += n;
  Conn* c = nullptr;
  if (auto it = s.sessions.find({static_cast<uint32_t>(index), from});
      it != s.sessions.end()) {
    c = FindConn(it->second);
  }
  if (c == nullptr) {
    if (s.sessions.size() >= s.info.udp_max_sessions) {
      ++counters.datagrams_dropped;
      Emit(EventKind::kDatagramDropped, s.num, 0, n);
      return;
    }
    if (AtConnectionLimit()) {
      ++counters.connections_rejected;
      ++counters.datagrams_dropped;
      Emit(EventKind::kDatagramDropped, s.num, 0, n);
      return;
    }
    c = NewUdpSession(s, index, from);
  }
  ++c->counters.datagrams_received;
  c->counters.bytes_received += n;
  Touch(*c);
  Emit(EventKind::kDataReceived, s.num, c->num, n, absl::string_view(data, n));
  const Behavior& b = s.info.behavior;
  auto reply = [this, &s, c](std::string payload) {
    if (!SendSessionDatagram(*c, std::move(payload)).ok()) {
      ++c->counters.datagrams_dropped;
      ++s.info.counters.datagrams_dropped;
    }
  };
  switch (b.kind) {
    case BehaviorKind::kHold:
      BufferDatagram(*c, data, n);
      break;
    case BehaviorKind::kEcho:
      if (AdmitUdpReply(s, *c, from, n, n)) reply(std::string(data, n));
      break;
    case BehaviorKind::kGreeting:
      if (AdmitUdpReply(s, *c, from, n,
                        s.greeting != nullptr ? s.greeting->size() : 0)) {
        reply(s.greeting != nullptr ? *s.greeting : std::string());
      }
      if (b.close_after_greeting) {
        StartClose(*c, CloseReason::kLocalClose, "greeting sent",
                   /*abort=*/false);
      } else {
        BufferDatagram(*c, data, n);
      }
      break;
    case BehaviorKind::kDiscard:
      break;
  }
}

Conn* EngineImpl::NewUdpSession(Server& s, size_t index,
                                const asio::ip::udp::endpoint& from) {
  auto conn = std::make_unique<Conn>();
  conn->num = NewConnNum();
  conn->server_num = s.num;
  conn->transport = Transport::kUdp;
  conn->origin = Origin::kUdpPeer;
  conn->behavior = s.info.behavior.kind;
  conn->udp_socket_index = static_cast<uint32_t>(index);
  conn->labels = s.labels;
  conn->local = s.udp_sockets[index]->local;
  conn->remote = PackedAddress::Ip(from.address(), from.port());
  Conn& c = AddConn(std::move(conn));
  s.sessions[{static_cast<uint32_t>(index), from}] = c.num;
  ++s.info.counters.connections_accepted;
  ++s.info.counters.connections_active;
  Emit(EventKind::kConnectionAccepted, s.num, c.num);
  StartConnection(c, absl::ZeroDuration(), s.info.udp_session_idle_timeout);
  return &c;
}

absl::Status EngineImpl::SendSessionDatagram(Conn& c, std::string data) {
  Server* s = FindServer(c.server_num);
  if (s == nullptr || s->stopped()) {
    return absl::FailedPreconditionError(
        absl::StrCat("send ", ConnId(c.num), ": its server ",
                     ServerId(c.server_num), " is stopped"));
  }
  UdpServerSocket& u = *s->udp_sockets[c.udp_socket_index];
  const asio::ip::udp::endpoint to = c.remote.udp();
  const uint64_t size = data.size();
  if (u.out.empty()) {
    asio::error_code ec;
    u.socket.send_to(asio::buffer(data), to, 0, ec);
    if (!ec) {
      ++c.counters.datagrams_sent;
      c.counters.bytes_sent += size;
      ++s->info.counters.datagrams_sent;
      s->info.counters.bytes_sent += size;
      Touch(c);
      Emit(EventKind::kDataSent, s->num, c.num, size);
      return absl::OkStatus();
    }
    if (!IsWouldBlock(ec)) {
      return ErrorStatus(
          absl::StrCat("send ", ConnId(c.num), " to ", c.remote.ToString()),
          ec);
    }
  }
  const uint64_t cost = size + kDatagramOverheadBytes;
  if (SendCharge(c) + cost > options_.send_buffer_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "send ", ConnId(c.num), ": send buffer full (send_buffer_bytes ",
        options_.send_buffer_bytes, ", each datagram costing ",
        kDatagramOverheadBytes, " bytes on top of its payload)"));
  }
  if (absl::Status st =
          CheckTotalRoom(absl::StrCat("send ", ConnId(c.num)), cost);
      !st.ok()) {
    return st;
  }
  u.out.push_back(OutDatagram{c.num, to, std::move(data)});
  c.counters.send_buffered += size;
  c.counters.send_buffered_peak =
      std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
  ++c.Extra().out_datagrams;
  Recharge(c);
  ArmUdpWrite(*s, c.udp_socket_index);
  return absl::OkStatus();
}

void EngineImpl::ArmUdpWrite(Server& s, size_t index) {
  UdpServerSocket& u = *s.udp_sockets[index];
  if (u.write_armed) return;
  u.write_armed = true;
  u.socket.async_wait(
      UdpSocket::wait_write,
      Locked([this, num = s.num, index](const asio::error_code& ec) {
        OnUdpWritable(num, index, ec);
      }));
}

void EngineImpl::OnUdpWritable(uint64_t server_num, size_t index,
                               const asio::error_code& ec) {
  Server* s = FindServer(server_num);
  if (s == nullptr || s->stopped()) return;
  UdpServerSocket& u = *s->udp_sockets[index];
  u.write_armed = false;
  if (ec) return;
  while (!u.out.empty()) {
    OutDatagram& d = u.out.front();
    asio::error_code error;
    u.socket.send_to(asio::buffer(d.data), d.to, 0, error);
    if (IsWouldBlock(error)) {
      ArmUdpWrite(*s, index);
      return;
    }
    const uint64_t size = d.data.size();
    Conn* c = FindConn(d.conn_num);
    if (c != nullptr) {
      c->counters.send_buffered -= size;
      --c->Extra().out_datagrams;
      Recharge(*c);
    }
    if (error) {
      if (c != nullptr) c->counters.send_bytes_lost += size;
    } else {
      ++s->info.counters.datagrams_sent;
      s->info.counters.bytes_sent += size;
      if (c != nullptr) {
        ++c->counters.datagrams_sent;
        c->counters.bytes_sent += size;
        Touch(*c);
      }
    }
    const uint64_t conn_num = d.conn_num;
    u.out.pop_front();
    // Room freed: a Stream waiting to send on that session goes on.
    if (Conn* sent = FindConn(conn_num)) PumpStreamSend(*sent);
  }
}

void EngineImpl::StopServer(Server& s, absl::string_view reason,
                            CloseReason conn_reason, uint64_t* closed) {
  if (s.stopped()) return;
  s.info.state = ServerState::kStopped;
  s.info.stopped_at = absl::Now();
  s.info.stop_reason = std::string(reason);
  registry_.ServerStopped(s.num);
  asio::error_code ec;
  // Handlers still queued for these sockets see stopped() and return before
  // touching the (now empty) vectors.
  for (auto& listener : s.listeners) listener->acceptor.close(ec);
  s.listeners.clear();
  // UDP peer sessions live on the server's sockets: they end with them.
  const auto sessions = s.sessions;
  for (const auto& [key, num] : sessions) {
    if (Conn* c = FindConn(num)) {
      StartClose(*c, conn_reason, "", /*abort=*/false);
      if (closed != nullptr) ++*closed;
    }
  }
  for (auto& socket : s.udp_sockets) {
    for (; !socket->out.empty(); socket->out.pop_front()) {
      if (Conn* c = FindConn(socket->out.front().conn_num)) {
        const uint64_t size = socket->out.front().data.size();
        c->counters.send_buffered -= size;
        c->counters.send_bytes_lost += size;
        --c->Extra().out_datagrams;
        Recharge(*c);
      }
    }
    socket->socket.close(ec);
  }
  s.udp_sockets.clear();
  // Only the socket this server bound, and only while it is still there.
  if (s.unix_file != nullptr) {
    s.unix_file->Unlink();
    s.unix_file.reset();
  }
  s.ttl_timer.reset();
  ScheduleTrim();
  Emit(EventKind::kServerStopped, s.num, 0);
}

void EngineImpl::DoStopServers(const Selector& selector, bool close_connections,
                               Done<absl::StatusOr<StopResult>> done) {
  if (absl::Status s = CheckSelector(selector); !s.ok()) {
    done(s);
    return;
  }
  std::vector<Server*> targets;
  if (!selector.id.empty()) {
    std::optional<uint64_t> num = ParseId(selector.id, "srv-");
    Server* s = num.has_value() ? FindServer(*num) : nullptr;
    if (s == nullptr) {
      done(absl::NotFoundError(
          absl::StrCat("server ", QuoteInput(selector.id), " not found")));
      return;
    }
    targets.push_back(s);
  } else {
    for (auto& [num, s] : registry_.servers()) {
      if (!s->stopped() && LabelsMatch(s->labels, selector.labels)) {
        targets.push_back(s.get());
      }
    }
  }
  StopResult result;
  absl::flat_hash_set<uint64_t> stopped;
  for (Server* s : targets) {
    if (!s->stopped()) stopped.insert(s->num);
    StopServer(*s, "stopped by request", CloseReason::kServerStopped,
               &result.connections_closed);
  }
  if (close_connections && !stopped.empty()) {
    // One pass over the connections for all the servers.
    for (auto& [num, c] : registry_.conns()) {
      if (c->state != ConnectionState::kClosed &&
          stopped.contains(c->server_num)) {
        StartClose(*c, CloseReason::kServerStopped, "", /*abort=*/false);
        ++result.connections_closed;
      }
    }
  }
  result.servers_stopped = targets.size();
  const size_t listed = std::min(targets.size(), kMaxListedResults);
  for (size_t i = 0; i < listed; ++i) {
    result.servers.push_back(Snapshot(*targets[i]));
  }
  done(std::move(result));
}

}  // namespace engine_internal
}  // namespace sockagent
