// Servers, accepting: draining a TCP or UNIX listener's accept queue
// (accept4, up to kAcceptsPerWakeup per wakeup), backing off when out of
// descriptors, the admission check for each new connection, and what the
// server's behaviour does with it at once (a greeting).
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h):
// in a completion handler on the loop thread, or inline on the caller's
// thread (a gRPC thread) inside a public Engine call. Nothing here blocks;
// socket calls are non-blocking.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/descriptor_exhaustion.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"
#include "agent/servers.h"

namespace sockagent {
namespace engine_internal {

namespace {

// Accepts per readiness wakeup before yielding to other sockets. The loop
// drains the listen queue (one accept per wakeup overflowed it under a burst
// of connects: BENCHMARKS.md, "Profiles", accept cost).
constexpr int kAcceptsPerWakeup = 256;
// Back-off when accept fails for lack of descriptors or memory (the pending
// connection stays queued, so re-arming at once would spin).
constexpr absl::Duration kAcceptRetry = absl::Milliseconds(100);

bool IsTransientAcceptError(const asio::error_code& ec) {
  // The client gave up before we accepted, or a signal: just go on.
  return ec == asio::error::connection_aborted ||
         ec == asio::error::interrupted ||
         (ec.category() == asio::error::get_system_category() &&
          (ec.value() == EPROTO || ec.value() == ECONNRESET));
}

}  // namespace

void Servers::ArmAccept(Server& s, size_t index) {
  engine_.AssertEngineLock();
  s.listeners[index]->acceptor.async_wait(
      StreamAcceptor::wait_read,
      engine_.Locked([this, num = s.num, index](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        OnAcceptReady(num, index, ec);
      }));
}

void Servers::OnAcceptReady(uint64_t server_num, size_t index,
                            const asio::error_code& ec) {
  engine_.AssertEngineLock();
  Server* s = engine_.registry_.FindServer(server_num);
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
  engine_.Emit(EventKind::kError, server_num, 0, 0, {},
               absl::StrCat("accept failed: ", error.message(), "; retrying"));
  listener.retry = std::make_unique<Timer>(engine_.io_, ToSteady(kAcceptRetry));
  listener.retry->async_wait(
      engine_.Locked([this, server_num, index](const asio::error_code& e) {
        engine_.AssertEngineLock();
        if (e) return;
        Server* found = engine_.registry_.FindServer(server_num);
        if (found != nullptr && !found->stopped()) ArmAccept(*found, index);
      }));
}

void Servers::OnAccepted(Server& s, const Listener& listener, int fd,
                         const sockaddr_storage& remote, socklen_t remote_len) {
  engine_.AssertEngineLock();
  const Behavior& b = s.info.behavior;
  // A greeting would be queued at once: it must fit the agent-wide bound.
  const uint64_t greeting =
      b.kind == BehaviorKind::kGreeting && s.greeting != nullptr
          ? s.greeting->size()
          : 0;
  if (engine_.AtConnectionLimit() ||
      greeting > engine_.ledger_.budget().Room()) {
    // Refuse with RST so the client learns at once.
    ++s.info.counters.connections_rejected;
    EngineCounters::Add(
        engine_.counters_
            .connections_rejected[static_cast<size_t>(RejectReason::kLimit)]);
    CloseDescriptor(fd, /*abort=*/true);
    engine_.Emit(
        EventKind::kError, s.num, 0, 0, {},
        "connection refused: agent connection or buffer limit reached");
    return;
  }
  auto conn = std::make_unique<Conn>();
  conn->num = engine_.registry_.NewConnNum();
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
  Conn& c = engine_.registry_.AddConn(std::move(conn));
  ++s.info.counters.connections_accepted;
  ++s.info.counters.connections_active;
  engine_.Emit(EventKind::kConnectionAccepted, s.num, c.num);
  c.opened_at = absl::Now();
  // Of the greeting, the bytes written before the reactor takes over.
  size_t greeted = 0;
  // While any fault exists the greeting takes the reactor's path, where
  // faults act on it.
  if (b.kind == BehaviorKind::kGreeting && b.close_after_greeting &&
      s.tls == nullptr &&
      engine_.options_.close_linger > absl::ZeroDuration() &&
      engine_.faults_.empty() &&
      engine_.closer_.GreetAndClose(s, c, &greeted)) {
    return;
  }
  if (!engine_.closer_.AdoptSocket(c)) return;
  // TLS: the handshake starts with the first readable ClientHello; the
  // greeting below waits in the send queue until it ends.
  if (s.tls != nullptr && !engine_.tls_.Start(c, s.tls, nullptr)) return;
  engine_.conn_io_.Start(c, absl::ZeroDuration(), s.info.idle_timeout);
  engine_.faults_.ApplyMatching(c);
  // A TLS proxy dials once the client's handshake ended (TlsStage), so a
  // scanner or a client without the right certificate costs no upstream
  // connection.
  if (b.kind == BehaviorKind::kProxy && s.tls == nullptr) {
    engine_.proxy_.Dial(s, c);
  }
  if (b.kind == BehaviorKind::kGreeting) {
    if (s.greeting != nullptr) {
      c.send_bytes.Append(absl::string_view(*s.greeting).substr(greeted));
    }
    c.counters.send_buffered = c.send_bytes.size();
    c.counters.send_buffered_peak = c.counters.send_buffered;
    engine_.ledger_.Recharge(c);
    if (b.close_after_greeting) {
      engine_.closer_.StartClose(c, CloseReason::kLocalClose, "greeting sent",
                                 /*abort=*/false);
    } else {
      engine_.conn_io_.Flush(c);
    }
  }
}

}  // namespace engine_internal
}  // namespace sockagent
