// Agent-wide counters of the engine, for metrics (service/metrics.h).
//
// The engine updates them as things happen (on the loop thread, or on a
// caller's thread holding the engine lock), with relaxed atomic adds; a
// scrape reads them from any thread without the engine lock, so its cost
// does not grow with the number of connections. Each value is exact on its
// own; values read one after another may be a few events apart.
//
//   const EngineCounters& c = engine->counters();
//   uint64_t tcp_in = EngineCounters::Get(c.bytes_received[0]);
#ifndef SOCKAGENT_AGENT_ENGINE_COUNTERS_H_
#define SOCKAGENT_AGENT_ENGINE_COUNTERS_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sockagent {

// Counted in EngineCounters::connections_rejected.
enum class RejectReason {
  // An accept refused (RST) at max_connections or because its greeting
  // would not fit max_total_buffered_bytes; a new UDP peer at
  // max_connections.
  kLimit,
  kCount,
};

// Counted in EngineCounters::datagrams_dropped.
enum class DropReason {
  kBufferFull,       // Receive buffer or max_total_buffered_bytes full.
  kSessionLimit,     // New UDP peer beyond the server's session cap.
  kConnectionLimit,  // New UDP peer at max_connections.
  kReplyBudget,      // UDP echo/greeting reply beyond agent/udp_budget.h.
  kFault,            // Dropped by a `drop` fault (agent/datagram_stage.h).
  kCount,
};

struct EngineCounters {
  // Indexed by Transport, Origin, CloseReason (agent/types.h, engine.h).
  static constexpr size_t kTransports = 3;
  static constexpr size_t kOrigins = 4;
  static constexpr size_t kCloseReasons = 11;
  using Counter = std::atomic<uint64_t>;

  static void Add(Counter& c, uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  static uint64_t Get(const Counter& c) {
    return c.load(std::memory_order_relaxed);
  }

  std::array<Counter, kTransports> servers_started{};
  std::array<Counter, kTransports> servers_stopped{};
  // Accepted, connected or new UDP peer session; and closed, by reason.
  std::array<std::array<Counter, kOrigins>, kTransports> connections_opened{};
  std::array<std::array<std::array<Counter, kCloseReasons>, kOrigins>,
             kTransports>
      connections_closed{};
  std::array<Counter, static_cast<size_t>(RejectReason::kCount)>
      connections_rejected{};
  // Half-closed connections now, a gauge per transport and origin: [0] the
  // peer's FIN came (ConnectionState::kPeerClosed), [1] ours went or is
  // wanted (kLocalClosed). Open and not half-closed = opened - closed -
  // these.
  std::array<std::array<std::array<Counter, 2>, kOrigins>, kTransports>
      half_closed{};
  // Payload bytes read from and written to sockets (UDP: datagram
  // payloads), and datagrams (UDP only).
  std::array<Counter, kTransports> bytes_received{};
  std::array<Counter, kTransports> bytes_sent{};
  Counter datagrams_received{0};
  Counter datagrams_sent{0};
  std::array<Counter, static_cast<size_t>(DropReason::kCount)>
      datagrams_dropped{};
  // Every buffered byte of the agent (what max_total_buffered_bytes
  // bounds): a gauge, stored whenever it changes.
  Counter buffered_bytes{0};
  // Watchers subscribed (a gauge), events produced, events a watcher lost.
  Counter watchers{0};
  Counter events{0};
  Counter events_lost{0};
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_COUNTERS_H_
