// The engine's UDP (agent/udp_io.h): clients (one connected socket per
// connection) and servers, whose sockets take datagrams in batches (recvmmsg)
// and keep one peer session (a Conn) per remote address. Replies and Sends to a
// session leave through its server's socket, queued while that is not writable.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h):
// in a completion handler on the loop thread, or inline on the caller's
// thread (a gRPC thread) inside a public Engine call. Nothing here blocks;
// socket calls are non-blocking.
#include "agent/udp_io.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"
#include "agent/perf_wire.h"

namespace sockagent {
namespace engine_internal {

namespace {

// Back-off when waiting on a UDP server socket fails.
constexpr absl::Duration kUdpRetry = absl::Milliseconds(100);
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

}  // namespace

void UdpIo::ReadClient(Conn& c) {
  engine_.AssertEngineLock();
  for (int i = 0; i < kDatagramsPerWakeup; ++i) {
    asio::error_code ec;
    const size_t n = c.udp->receive(
        asio::buffer(engine_.scratch_.data(), engine_.scratch_.size()), 0, ec);
    if (ec) {
      if (IsWouldBlock(ec)) break;
      // ICMP port unreachable for an earlier datagram: UDP has no
      // connection to lose, so the socket stays open.
      if (ec == asio::error::connection_refused) continue;
      engine_.conn_io_.OnStreamError(c, ec, "receive");
      return;
    }
    ++c.counters.datagrams_received;
    c.counters.bytes_received += n;
    engine_.conn_io_.Touch(c);
    engine_.Emit(EventKind::kDataReceived, c.server_num, c.num, n,
                 absl::string_view(engine_.scratch_.data(), n));
    if (c.extra == nullptr || c.extra->faults == nullptr ||
        !engine_.faults_.HoldDatagram(c, engine_.scratch_.data(), n)) {
      Deliver(c, engine_.scratch_.data(), n);
    }
    if (c.finalized) return;
  }
  engine_.conn_io_.ArmRead(c);
}

bool UdpIo::RoomToReceive(Conn& c, uint64_t cost, size_t n) {
  engine_.AssertEngineLock();
  if (RecvCharge(c) + cost <= engine_.options_.recv_buffer_bytes &&
      cost <= engine_.ledger_.budget().Room()) {
    return true;
  }
  ++c.counters.datagrams_dropped;
  if (Server* s = engine_.registry_.FindServer(c.server_num)) {
    ++s->info.counters.datagrams_dropped;
  }
  engine_.Emit(EventKind::kDatagramDropped, c.server_num, c.num, n);
  return false;
}

void UdpIo::BufferDatagram(Conn& c, const char* data, size_t n) {
  engine_.AssertEngineLock();
  if (c.state == ConnectionState::kClosed) return;
  if (!RoomToReceive(c, n + kDatagramOverheadBytes, n)) return;
  c.Extra().recv_datagrams.push_back(
      ReceivedDatagram{std::string(data, n), absl::Now()});
  c.counters.recv_buffered += n;
  c.counters.recv_buffered_peak =
      std::max(c.counters.recv_buffered_peak, c.counters.recv_buffered);
  engine_.ledger_.Recharge(c);
  engine_.receiver_.Notify(c);
}

void UdpIo::FlushClient(Conn& c) {
  engine_.AssertEngineLock();
  if (c.extra == nullptr) return;
  Fifo<std::string>& queue = c.extra->send_datagrams;
  while (!queue.empty()) {
    const std::string& d = queue.front();
    asio::error_code ec;
    c.udp->send(asio::buffer(d), 0, ec);
    if (IsWouldBlock(ec)) {
      engine_.conn_io_.ArmWrite(c);
      return;
    }
    c.counters.send_buffered -= d.size();
    if (ec) {
      c.counters.send_bytes_lost += d.size();
    } else {
      ++c.counters.datagrams_sent;
      c.counters.bytes_sent += d.size();
      engine_.conn_io_.Touch(c);
    }
    queue.pop_front();
    engine_.ledger_.Recharge(c);
  }
  engine_.streams_.Pump(c);
}

void UdpIo::ArmRead(Server& s, size_t index) {
  engine_.AssertEngineLock();
  s.udp_sockets[index]->socket.async_wait(
      UdpSocket::wait_read,
      engine_.Locked([this, num = s.num, index](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        OnReadable(num, index, ec);
      }));
}

void UdpIo::OnReadable(uint64_t server_num, size_t index,
                       const asio::error_code& ec) {
  engine_.AssertEngineLock();
  Server* s = engine_.registry_.FindServer(server_num);
  if (s == nullptr || s->stopped() || ec == asio::error::operation_aborted) {
    return;
  }
  if (ec) {
    // Strange, but the server must not go deaf for good: try again later.
    engine_.Emit(
        EventKind::kError, server_num, 0, 0, {},
        absl::StrCat("udp receive failed: ", ec.message(), "; retrying"));
    UdpServerSocket& u = *s->udp_sockets[index];
    u.retry = std::make_unique<Timer>(engine_.io_, ToSteady(kUdpRetry));
    u.retry->async_wait(
        engine_.Locked([this, server_num, index](const asio::error_code& e) {
          engine_.AssertEngineLock();
          if (e) return;
          Server* found = engine_.registry_.FindServer(server_num);
          if (found != nullptr && !found->stopped()) ArmRead(*found, index);
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
  ArmRead(*s, index);
}

void UdpIo::OnDatagram(Server& s, size_t index,
                       const asio::ip::udp::endpoint& from, const char* data,
                       size_t n) {
  engine_.AssertEngineLock();
  ServerCounters& counters = s.info.counters;
  ++counters.datagrams_received;
  counters.bytes_received += n;
  Conn* c = nullptr;
  if (auto it = s.sessions.find({static_cast<uint32_t>(index), from});
      it != s.sessions.end()) {
    c = engine_.registry_.FindConn(it->second);
  }
  if (c == nullptr) {
    if (s.sessions.size() >= s.info.udp_max_sessions) {
      ++counters.datagrams_dropped;
      CountNewPeerDrop(engine_.counters_, DropReason::kSessionLimit, n);
      engine_.Emit(EventKind::kDatagramDropped, s.num, 0, n);
      return;
    }
    if (engine_.AtConnectionLimit()) {
      ++counters.connections_rejected;
      ++counters.datagrams_dropped;
      CountNewPeerDrop(engine_.counters_, DropReason::kConnectionLimit, n);
      engine_.Emit(EventKind::kDatagramDropped, s.num, 0, n);
      return;
    }
    c = NewSession(s, index, from);
  }
  ++c->counters.datagrams_received;
  c->counters.bytes_received += n;
  engine_.conn_io_.Touch(*c);
  engine_.Emit(EventKind::kDataReceived, s.num, c->num, n,
               absl::string_view(data, n));
  if (c->extra != nullptr && c->extra->faults != nullptr &&
      engine_.faults_.HoldDatagram(*c, data, n)) {
    return;
  }
  DeliverToSession(s, *c, from, data, n);
}

void UdpIo::Deliver(Conn& c, const char* data, size_t n) {
  engine_.AssertEngineLock();
  if (c.is_udp_session()) {
    if (Server* s = engine_.registry_.FindServer(c.server_num)) {
      DeliverToSession(*s, c, c.remote.udp(), data, n);
    }
    return;
  }
  if (c.behavior == BehaviorKind::kProxy) {
    engine_.proxy_.OnUpstreamDatagram(c, data, n);
  } else {
    BufferDatagram(c, data, n);
  }
}

void UdpIo::DeliverToSession(Server& s, Conn& session,
                             const asio::ip::udp::endpoint& from,
                             const char* data, size_t n) {
  engine_.AssertEngineLock();
  Conn* c = &session;
  const Behavior& b = s.info.behavior;
  auto reply = [this, &s, c](std::string payload) {
    engine_.AssertEngineLock();
    if (!SendDatagram(*c, std::move(payload)).ok()) {
      ++c->counters.datagrams_dropped;
      ++s.info.counters.datagrams_dropped;
    }
  };
  switch (b.kind) {
    case BehaviorKind::kHold:
      BufferDatagram(*c, data, n);
      break;
    case BehaviorKind::kEcho:
      if (AdmitReply(s, *c, from, n, n)) reply(std::string(data, n));
      break;
    case BehaviorKind::kGreeting:
      if (AdmitReply(s, *c, from, n,
                     s.greeting != nullptr ? s.greeting->size() : 0)) {
        reply(s.greeting != nullptr ? *s.greeting : std::string());
      }
      if (b.close_after_greeting) {
        engine_.closer_.StartClose(*c, CloseReason::kLocalClose,
                                   "greeting sent",
                                   /*abort=*/false);
      } else {
        BufferDatagram(*c, data, n);
      }
      break;
    case BehaviorKind::kDiscard:
      // Perf datagrams (agent/perf_wire.h) are counted per sender: loss,
      // order, jitter. A few byte compares for anything else.
      if (std::optional<PerfHeader> h = ParsePerfHeader(data, n)) {
        ConnExtra& x = c->Extra();
        if (x.perf == nullptr) x.perf = std::make_unique<PerfReceiveCounter>();
        x.perf->Account(*h, absl::Now(), n);
      }
      break;
    case BehaviorKind::kProxy:
      engine_.proxy_.OnSessionDatagram(s, *c, data, n);
      break;
  }
}

Conn* UdpIo::NewSession(Server& s, size_t index,
                        const asio::ip::udp::endpoint& from) {
  engine_.AssertEngineLock();
  auto conn = std::make_unique<Conn>();
  conn->num = engine_.registry_.NewConnNum();
  conn->server_num = s.num;
  conn->transport = Transport::kUdp;
  conn->origin = Origin::kUdpPeer;
  conn->behavior = s.info.behavior.kind;
  conn->udp_socket_index = static_cast<uint32_t>(index);
  conn->labels = s.labels;
  conn->local = s.udp_sockets[index]->local;
  conn->remote = PackedAddress::Ip(from.address(), from.port());
  Conn& c = engine_.registry_.AddConn(std::move(conn));
  s.sessions[{static_cast<uint32_t>(index), from}] = c.num;
  ++s.info.counters.connections_accepted;
  ++s.info.counters.connections_active;
  engine_.Emit(EventKind::kConnectionAccepted, s.num, c.num);
  engine_.conn_io_.Start(c, absl::ZeroDuration(),
                         s.info.udp_session_idle_timeout);
  engine_.faults_.ApplyMatching(c);  // The server's UDP faults, selectors.
  if (c.behavior == BehaviorKind::kProxy) engine_.proxy_.Dial(s, c);
  return &c;
}

absl::Status UdpIo::SendDatagram(Conn& c, std::string data) {
  engine_.AssertEngineLock();
  if (c.extra != nullptr && c.extra->faults != nullptr &&
      !c.extra->faults->datagrams.empty()) {
    return engine_.faults_.SendDatagram(c, std::move(data));
  }
  return SendNow(c, std::move(data));
}

absl::Status UdpIo::SendNow(Conn& c, std::string data) {
  engine_.AssertEngineLock();
  if (c.is_udp_session()) return SendSessionDatagram(c, std::move(data));
  if (c.udp == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("send ", ConnId(c.num), ": the socket is closed"));
  }
  return SendClientDatagram(c, std::move(data));
}

absl::Status UdpIo::SendClientDatagram(Conn& c, std::string data) {
  engine_.AssertEngineLock();
  const std::string id = ConnId(c.num);
  const uint64_t size = data.size();
  ConnExtra& x = c.Extra();
  if (x.send_datagrams.empty()) {
    asio::error_code ec;
    c.udp->send(asio::buffer(data), 0, ec);
    if (!ec) {
      ++c.counters.datagrams_sent;
      c.counters.bytes_sent += size;
      engine_.conn_io_.Touch(c);
      engine_.Emit(EventKind::kDataSent, c.server_num, c.num, size);
      return absl::OkStatus();
    }
    if (!IsWouldBlock(ec)) {
      return ErrorStatus(absl::StrCat("send ", id, " to ", c.remote.ToString()),
                         ec);
    }
  }
  const uint64_t cost = size + kDatagramOverheadBytes;
  if (SendCharge(c) + cost > engine_.options_.send_buffer_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "send ", id, ": send buffer full: ", x.send_datagrams.size(),
        " datagrams queued; one more would exceed send_buffer_bytes (",
        engine_.options_.send_buffer_bytes, ", each datagram costing ",
        kDatagramOverheadBytes,
        " bytes on top of its payload); retry after it drains"));
  }
  if (absl::Status s =
          engine_.ledger_.budget().CheckRoom(absl::StrCat("send ", id), cost);
      !s.ok()) {
    return s;
  }
  x.send_datagrams.push_back(std::move(data));
  c.counters.send_buffered += size;
  c.counters.send_buffered_peak =
      std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
  engine_.ledger_.Recharge(c);
  engine_.conn_io_.ArmWrite(c);
  return absl::OkStatus();
}

absl::Status UdpIo::SendSessionDatagram(Conn& c, std::string data) {
  engine_.AssertEngineLock();
  Server* s = engine_.registry_.FindServer(c.server_num);
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
      engine_.conn_io_.Touch(c);
      engine_.Emit(EventKind::kDataSent, s->num, c.num, size);
      return absl::OkStatus();
    }
    if (!IsWouldBlock(ec)) {
      return ErrorStatus(
          absl::StrCat("send ", ConnId(c.num), " to ", c.remote.ToString()),
          ec);
    }
  }
  const uint64_t cost = size + kDatagramOverheadBytes;
  if (SendCharge(c) + cost > engine_.options_.send_buffer_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "send ", ConnId(c.num), ": send buffer full (send_buffer_bytes ",
        engine_.options_.send_buffer_bytes, ", each datagram costing ",
        kDatagramOverheadBytes, " bytes on top of its payload)"));
  }
  if (absl::Status st = engine_.ledger_.budget().CheckRoom(
          absl::StrCat("send ", ConnId(c.num)), cost);
      !st.ok()) {
    return st;
  }
  u.out.push_back(OutDatagram{c.num, to, std::move(data)});
  c.counters.send_buffered += size;
  c.counters.send_buffered_peak =
      std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
  ++c.Extra().out_datagrams;
  engine_.ledger_.Recharge(c);
  ArmWrite(*s, c.udp_socket_index);
  return absl::OkStatus();
}

void UdpIo::ArmWrite(Server& s, size_t index) {
  engine_.AssertEngineLock();
  UdpServerSocket& u = *s.udp_sockets[index];
  if (u.write_armed) return;
  u.write_armed = true;
  u.socket.async_wait(
      UdpSocket::wait_write,
      engine_.Locked([this, num = s.num, index](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        OnWritable(num, index, ec);
      }));
}

void UdpIo::OnWritable(uint64_t server_num, size_t index,
                       const asio::error_code& ec) {
  engine_.AssertEngineLock();
  Server* s = engine_.registry_.FindServer(server_num);
  if (s == nullptr || s->stopped()) return;
  UdpServerSocket& u = *s->udp_sockets[index];
  u.write_armed = false;
  if (ec) return;
  while (!u.out.empty()) {
    OutDatagram& d = u.out.front();
    asio::error_code error;
    u.socket.send_to(asio::buffer(d.data), d.to, 0, error);
    if (IsWouldBlock(error)) {
      ArmWrite(*s, index);
      return;
    }
    const uint64_t size = d.data.size();
    Conn* c = engine_.registry_.FindConn(d.conn_num);
    if (c != nullptr) {
      c->counters.send_buffered -= size;
      --c->Extra().out_datagrams;
      engine_.ledger_.Recharge(*c);
    }
    if (error) {
      if (c != nullptr) c->counters.send_bytes_lost += size;
    } else {
      ++s->info.counters.datagrams_sent;
      s->info.counters.bytes_sent += size;
      CountQueuedDatagramSent(engine_.counters_, size);  // No event for it.
      if (c != nullptr) {
        ++c->counters.datagrams_sent;
        c->counters.bytes_sent += size;
        engine_.conn_io_.Touch(*c);
      }
    }
    const uint64_t conn_num = d.conn_num;
    u.out.pop_front();
    // Room freed: a Stream waiting to send on that session goes on.
    if (Conn* sent = engine_.registry_.FindConn(conn_num))
      engine_.streams_.Pump(*sent);
  }
}

}  // namespace engine_internal
}  // namespace sockagent
