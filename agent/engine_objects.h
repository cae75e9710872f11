// The engine's objects: connections (Conn), servers (Server) with their
// listeners and UDP sockets, and what hangs off them (parked Receives,
// Stream attachments, queued datagrams). Plain structs, no behaviour beyond
// accessors: EngineImpl's parts act on them. Internal header of the
// engine_*.cc files and the components (it pulls in Asio).
//
// Lock: every object here is guarded by the engine lock (EngineImpl's
// engine_mu_); the Registry (registry.h) owns them, keyed by number.
//
//   Conn& c = registry_.AddConn(std::make_unique<Conn>());
//   c.send_bytes.Append(data); Recharge(c);   // then Flush(c)
//
// Objects, all owned by the Registry and keyed by number; completion
// handlers capture `this` (safe: the loop thread is joined before
// destruction) plus a number,
// and look the object up again, so a handler that outlives its object finds
// nothing (or a finalized record) and returns:
//
//   servers    srv-N  -> Server: TCP/UNIX listeners or UDP sockets, TTL
//                        timer, UDP peer sessions (peer address -> conn-N).
//                        Stopped servers stay listable (bounded history).
//   conns      conn-N -> Conn: its socket (or, for a UDP peer session, its
//                        server's socket), buffers, timers, parked Receive.
//                        A closed connection keeps its record (and, after a
//                        peer FIN/reset, the bytes nobody received yet) in a
//                        bounded history.
//   connector_ OpenClient calls in progress and name lookups
//              (agent/connector.h): getaddrinfo runs on the ResolverPool
//              given to Engine::Create, never on the loop; the result is
//              posted back and found by number (or not: cancelled, or after
//              Shutdown, when the loop no longer runs and the posted result
//              is dropped unrun).
//
// Bytes: every connection's buffered bytes are charged (Conn::charged) to
// the BufferBudget's total (ledger.h), which max_total_buffered_bytes bounds;
// those of finalized records also to its history share (at most a quarter of
// it).
//
// Reading never uses a per-connection read buffer: a connection waits for
// readability (async_wait) and reads into one loop-wide scratch buffer, then
// copies only the bytes it must keep. Stream connection life cycle:
//
//   kOpen --peer FIN--> kPeerClosed --close/behaviour--> kClosed
//     |--shutdown-write--> kLocalClosed --peer FIN--> kClosed
//     '--close / reset / timeout / error-------------> kClosed
//
// A graceful close marks the record kClosed at once (Send/Receive see it
// closed) and leaves a "tail" on the socket: flush, FIN, read and discard
// until the peer's FIN or close_linger, then close. `finalized` marks the
// end of the tail (socket closed, record in history); until then the
// socket counts against max_connections. A greeting-and-close server skips
// the reactor when it can (GreetAndClose): greeting and FIN leave straight
// after accept, and one recv decides: nothing received yet closes the
// socket at once (the kernel finishes the close), bytes start the tail.
//
// While a stream connection does not read (after the peer's FIN, or paused
// by a full buffer) it waits for socket errors instead (async_wait
// wait_error: EPOLLERR/EPOLLHUP), so a reset is still seen.
#ifndef SOCKAGENT_AGENT_ENGINE_OBJECTS_H_
#define SOCKAGENT_AGENT_ENGINE_OBJECTS_H_

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/address.h"
#include "agent/byte_queue.h"
#include "agent/datagram_stage.h"
#include "agent/engine.h"
#include "agent/engine_sockets.h"
#include "agent/faults.h"
#include "agent/fifo.h"
#include "agent/perf_wire.h"
#include "agent/tls.h"
#include "agent/udp_budget.h"
#include "agent/unix_path.h"

namespace sockagent {
namespace engine_internal {

struct ReceivedDatagram {
  std::string data;
  absl::Time received_at;
};

// A datagram waiting for its UDP socket to become writable.
struct OutDatagram {
  uint64_t conn_num = 0;
  asio::ip::udp::endpoint to;
  std::string data;
};

// A Receive that found another one parked on its connection. The parked
// one's caller may have cancelled a moment ago: gRPC tells the agent on
// another thread, possibly after this call arrived. So it waits (timer) up
// to kReceiveGiveWay for the parked one to end, then takes its place;
// otherwise it fails FailedPrecondition. At most one per connection.
struct ContendingReceive {
  uint64_t token = 0;
  ReceiveSpec spec;
  absl::Time arrived;
  Done<absl::StatusOr<ReceiveResult>> done;
  std::unique_ptr<Timer> timer;
};

struct PendingReceive {
  uint64_t token = 0;
  ReceiveSpec spec;
  Done<absl::StatusOr<ReceiveResult>> done;
  std::unique_ptr<Timer> timer;
  // With a delimiter: occurrences starting before this offset were already
  // ruled out, so each arrival searches only the new bytes.
  size_t scanned = 0;
  std::unique_ptr<ContendingReceive> next;  // Takes over when this ends.
};

// The faults acting on one connection (agent/faults.h, fault_stage.h):
// its SEND stage (stream faults on what it writes), its RECEIVE stage
// (stream faults with direction RECEIVED, on what it reads) with the bytes
// read but not yet delivered, its datagram stages with the datagrams a
// delay holds (UDP faults, sent and received), and the one timer that
// wakes them.
struct ConnFaults {
  SendStage send;
  SendStage receive;        // The same model: "queued" is read, "written" is
                            // delivered to the behaviour.
  ByteQueue received;       // Read from the socket, not delivered yet: counts
                            // against recv_buffer_bytes and the agent's total.
  DatagramStage datagrams;  // UDP faults on what it sends,
  DatagramStage received_datagrams;  // and on what it receives (RECEIVED),
                                     // holding delayed ones: charged to the
                                     // receive buffer.
  std::unique_ptr<Timer> timer;
  int64_t timer_due_ns = 0;  // Steady clock; 0: not armed.
};

// A TLS connection's session and what its handshake saw (tls_stage.h).
struct ConnTls {
  std::unique_ptr<TlsSession> session;  // Freed when the socket closes.
  std::shared_ptr<const TlsInfo> info;  // Once the handshake ended.
  // What `info` is charged against the agent-wide byte bound (ledger.h);
  // set with it by TlsStage::KeepFacts.
  uint64_t facts_bytes = 0;
  std::unique_ptr<Timer> handshake_timer;
  absl::Duration handshake_timeout;  // As armed.
  // OpenClient / OpenStream, answered once the handshake ends.
  Done<absl::StatusOr<ConnectionInfo>> on_handshake;
  bool read_wants_write = false;  // SSL_read asked for writability.
  bool write_wants_read = false;  // SSL_write asked for readability.
  size_t retry_len = 0;  // The length of a write OpenSSL wants retried.
};

// The rarely used parts of a connection, allocated on first use, so an idle
// connection without timeouts carries one pointer for all of them.
struct ConnExtra {
  absl::Duration ttl = absl::ZeroDuration();
  absl::Duration idle_timeout = absl::ZeroDuration();
  std::unique_ptr<Timer> ttl_timer;
  std::unique_ptr<Timer> idle_timer;
  std::unique_ptr<Timer> linger_timer;  // Graceful-close tail.
  int64_t last_activity_ns = 0;         // Steady clock; for the idle timeout.
  std::string close_detail;
  absl::Time closed_at = absl::InfinitePast();
  // UDP only (every peer session has an idle timer, hence an extra anyway).
  Fifo<ReceivedDatagram> recv_datagrams;
  Fifo<std::string> send_datagrams;  // UDP client, socket not writable.
  uint64_t out_datagrams = 0;  // Peer session: queued on its server socket.
  // Unreceived bytes discarded to keep the closed history's bytes bounded.
  uint64_t history_discarded = 0;
  uint64_t attachment = 0;  // The attached Stream's token; 0: none.
  // Proxied halves (agent/proxy.h): the other half's number (0: none
  // yet), and for a UDP peer session the bytes it had received when its
  // last upstream reply was admitted (the reply budget's credit).
  uint64_t proxy_peer = 0;
  uint64_t proxy_credited = 0;
  std::unique_ptr<ConnFaults> faults;  // Null: no fault acts on it.
  // UDP faults (agent/datagram_stage.h) on this connection, ever: datagrams
  // dropped, sent twice, held for a delay.
  uint64_t fault_dropped = 0;
  uint64_t fault_duplicated = 0;
  uint64_t fault_delayed = 0;
  std::unique_ptr<ConnTls> tls;  // TLS connections only.
  // UDP peer sessions of discard servers: what arrived with a Perf header
  // (agent/perf_wire.h), from the first such datagram on.
  std::unique_ptr<PerfReceiveCounter> perf;
};

// The read side of a connection's state (stream or UDP client socket).
struct ConnReading {
  bool armed = false;         // A wait_read is pending.
  bool paused = false;        // Buffer bound reached; see ResumeReading.
  bool total_paused = false;  // Paused by the agent-wide bound too; also
                              // listed in the BufferBudget's paused list.
  bool error_armed = false;   // A wait_error is pending (while not reading).
  bool hangup = false;        // Hung up without an error: watch no more.
  bool eof = false;           // Peer FIN seen.
  bool fin_held = false;      // Peer FIN read, held by a RECEIVED fault
                              // (bytes before it, or slow_close): no more
                              // reading; eof once it is delivered.
};

// The write side: a pending wait and the FIN.
struct ConnWriting {
  bool armed = false;       // A wait_write is pending.
  bool fin_wanted = false;  // shutdown(send) once the send buffer drains.
  bool fin_sent = false;
};

// One connection: TCP or UNIX stream, UDP client, or UDP peer session. Kept
// small on purpose (an idle connection costs well under 1 KiB: BENCHMARKS.md,
// "Memory", line 5b; docs/ARCHITECTURE.md):
// rare parts live in ConnExtra, buffers own no memory while empty.
struct Conn {
  uint64_t num = 0;
  uint64_t server_num = 0;  // 0: opened by OpenClient.
  Transport transport = Transport::kTcp;
  Origin origin = Origin::kOpened;
  ConnectionState state = ConnectionState::kOpen;
  CloseReason close_reason = CloseReason::kNone;
  BehaviorKind behavior = BehaviorKind::kHold;  // What to do with input.
  uint32_t udp_socket_index = 0;  // Peer session: its server's socket.
  ConnReading reading;
  ConnWriting writing;
  bool finalized = false;  // Socket closed: a history record now.
  // A socket not (yet) handed to the reactor: just accepted, or a quick
  // tail (see EngineImpl::GreetAndClose); -1 otherwise.
  int raw_fd = -1;
  uint64_t charged =
      0;  // What this connection adds to the BufferBudget's total.
  std::shared_ptr<const Labels> labels;  // Null: none. Shared with server.
  PackedAddress local;
  PackedAddress remote;
  ConnectionCounters counters;
  absl::Time opened_at;
  std::unique_ptr<StreamSocket> stream;  // TCP and UNIX.
  std::unique_ptr<UdpSocket> udp;        // UDP client (connected socket).
  ByteQueue recv_bytes;                  // Stream transports.
  ByteQueue send_bytes;
  std::unique_ptr<PendingReceive> receive;
  std::unique_ptr<ConnExtra> extra;

  ConnExtra& Extra() {
    if (extra == nullptr) extra = std::make_unique<ConnExtra>();
    return *extra;
  }
  bool has_datagrams() const {
    return extra != nullptr && !extra->recv_datagrams.empty();
  }
  bool is_udp_session() const { return origin == Origin::kUdpPeer; }
};

// The timers of a connection (in ConnExtra), as OnConnTimer is told.
enum class ConnTimer { kTtl, kIdle, kLinger };

// Memory per idle connection must not grow (BENCHMARKS.md, line 5b): 320
// bytes on x86-64 with libstdc++ when the state bools were grouped.
static_assert(sizeof(Conn) <= 320, "Conn grew: idle connections cost more");

struct Listener {
  explicit Listener(asio::io_context& io) : acceptor(io) {}
  StreamAcceptor acceptor;
  // The local address of every accepted connection, unless bound to a
  // wildcard (then getsockname tells).
  std::optional<PackedAddress> fixed_local;
  std::unique_ptr<Timer> retry;  // Accept failed for lack of descriptors.
};

struct UdpServerSocket {
  explicit UdpServerSocket(asio::io_context& io) : socket(io) {}
  UdpSocket socket;
  PackedAddress local;
  Fifo<OutDatagram> out;
  bool write_armed = false;
  std::unique_ptr<Timer> retry;  // Waiting failed: read again later.
};

struct Server {
  uint64_t num = 0;
  ServerInfo info;  // Live record: counters and state are updated in place.
  std::shared_ptr<const Labels> labels;  // Handed to accepted connections.
  std::shared_ptr<const std::string> unix_path;  // UNIX: local address.
  // Kept once here (info.behavior.greeting stays empty): listings copy at
  // most kListedGreetingBytes of it. Null: no greeting.
  std::shared_ptr<const std::string> greeting;
  // UNIX (filesystem path): the socket file to remove when stopping.
  std::unique_ptr<BoundUnixFile> unix_file;
  std::vector<std::unique_ptr<Listener>> listeners;
  std::vector<std::unique_ptr<UdpServerSocket>> udp_sockets;
  std::map<std::pair<uint32_t, asio::ip::udp::endpoint>, uint64_t> sessions;
  std::unique_ptr<Timer> ttl_timer;
  // UDP echo and greeting servers: what their replies may cost.
  std::unique_ptr<UdpReplyBudget> reply_budget;
  std::shared_ptr<const TlsServerContext> tls;  // Null: no TLS.

  bool stopped() const { return info.state == ServerState::kStopped; }
};

// A Stream attached to a connection (streams.h).
struct Attachment {
  uint64_t token = 0;
  uint64_t conn_num = 0;
  bool close_on_detach = false;  // Opened by the stream.
  // A StreamSend waiting for room in the send buffer (at most one).
  std::optional<std::string> waiting;
  Done<absl::Status> waiting_done;
  // StreamShutdownWrite waiting for the FIN to go out.
  Done<absl::Status> fin_done;
  uint64_t receive_token = 0;  // Its parked StreamReceive, if any.
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_OBJECTS_H_
