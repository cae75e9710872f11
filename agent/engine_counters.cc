// EngineImpl::CountEvent: keeps the agent-wide counters (engine_counters.h)
// up to date from the events the engine emits, so that the places where
// things happen need no metrics code of their own.
#include "agent/engine_counters.h"

#include "absl/strings/match.h"
#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {

namespace {

size_t Index(Transport t) { return static_cast<size_t>(t); }

}  // namespace

void EngineImpl::CountEvent(EventKind kind, uint64_t server_num,
                            uint64_t conn_num, uint64_t size,
                            absl::string_view message) {
  EngineCounters& k = counters_;
  EngineCounters::Add(k.events);
  switch (kind) {
    case EventKind::kServerStarted:
    case EventKind::kServerStopped: {
      const Server* s = registry_.FindServer(server_num);
      if (s == nullptr) return;
      const size_t t = Index(s->info.transport);
      EngineCounters::Add(kind == EventKind::kServerStarted
                              ? k.servers_started[t]
                              : k.servers_stopped[t]);
      return;
    }
    case EventKind::kConnectionAccepted:
    case EventKind::kConnectionConnected:
    case EventKind::kConnectionClosed:
    case EventKind::kDataReceived:
    case EventKind::kDataSent:
    case EventKind::kDatagramDropped:
      break;
    default:
      return;
  }
  // Drops of a new UDP peer's datagram (no connection) are counted where
  // they happen (udp_io.cc), with their reason.
  if (conn_num == 0) return;
  const Conn* c = registry_.FindConn(conn_num);
  if (c == nullptr) return;
  const size_t t = Index(c->transport);
  const size_t o = static_cast<size_t>(c->origin);
  const bool udp = c->transport == Transport::kUdp;
  switch (kind) {
    case EventKind::kConnectionAccepted:
    case EventKind::kConnectionConnected:
      EngineCounters::Add(k.connections_opened[t][o]);
      break;
    case EventKind::kConnectionClosed: {
      const size_t r = static_cast<size_t>(c->close_reason);
      if (r < EngineCounters::kCloseReasons) {
        EngineCounters::Add(k.connections_closed[t][o][r]);
      }
      break;
    }
    case EventKind::kDataReceived:
      EngineCounters::Add(k.bytes_received[t], size);
      if (udp) EngineCounters::Add(k.datagrams_received);
      break;
    case EventKind::kDataSent:
      EngineCounters::Add(k.bytes_sent[t], size);
      if (udp) EngineCounters::Add(k.datagrams_sent);
      break;
    case EventKind::kDatagramDropped:
      // Buffer-full drops carry no message; the reply budget's
      // (udp_reply.cc) and a drop fault's ("fault NAME: drop") do.
      EngineCounters::Add(k.datagrams_dropped[static_cast<size_t>(
          message.empty()                       ? DropReason::kBufferFull
          : absl::StartsWith(message, "fault ") ? DropReason::kFault
                                                : DropReason::kReplyBudget)]);
      break;
    default:
      break;
  }
}

void CountNewPeerDrop(EngineCounters& k, DropReason reason, uint64_t size) {
  const size_t udp = Index(Transport::kUdp);
  EngineCounters::Add(k.bytes_received[udp], size);
  EngineCounters::Add(k.datagrams_received);
  EngineCounters::Add(k.datagrams_dropped[static_cast<size_t>(reason)]);
  if (reason == DropReason::kConnectionLimit) {
    EngineCounters::Add(
        k.connections_rejected[static_cast<size_t>(RejectReason::kLimit)]);
  }
}

void CountQueuedDatagramSent(EngineCounters& counters, uint64_t size) {
  EngineCounters::Add(counters.bytes_sent[Index(Transport::kUdp)], size);
  EngineCounters::Add(counters.datagrams_sent);
}

void SetConnState(EngineCounters& counters, Conn& c, ConnectionState state) {
  if (c.state == state) return;
  auto gauge = [&](ConnectionState s) -> EngineCounters::Counter* {
    const size_t half = s == ConnectionState::kPeerClosed    ? 0
                        : s == ConnectionState::kLocalClosed ? 1
                                                             : 2;
    if (half == 2) return nullptr;
    return &counters.half_closed[Index(c.transport)]
                                [static_cast<size_t>(c.origin)][half];
  };
  if (EngineCounters::Counter* was = gauge(c.state)) {
    was->fetch_sub(1, std::memory_order_relaxed);
  }
  if (EngineCounters::Counter* now = gauge(state)) EngineCounters::Add(*now);
  c.state = state;
}

}  // namespace engine_internal
}  // namespace sockagent
