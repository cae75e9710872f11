// EngineImpl: the socket engine behind engine.h. Internal header, included
// only by the engine_*.cc files (it pulls in Asio).
//
// Threads: one engine lock (loop_mu_) guards every object below. The loop
// thread takes it around each completion handler (Locked); a public Engine
// method takes it on the caller's thread and does its work there, inline
// (PostWork), so a control call costs no hop to the loop and back: a Send
// writes to the socket and answers `done` before it returns. A call made
// while the lock is already held by this thread (from inside a `done` or a
// handler) is posted to the loop instead, so nothing re-enters the engine.
// The loop thread is the only one that waits in epoll and runs handlers;
// Asio lets any thread start an async operation. Shutdown() posts and joins.
//
// Objects, all owned here and keyed by number; completion handlers capture
// `this` (safe: the loop thread is joined before destruction) plus a number,
// and look the object up again, so a handler that outlives its object finds
// nothing (or a finalized record) and returns:
//
//   servers_   srv-N  -> Server: TCP/UNIX listeners or UDP sockets, TTL
//                        timer, UDP peer sessions (peer address -> conn-N).
//                        Stopped servers stay listable (bounded history).
//   conns_     conn-N -> Conn: its socket (or, for a UDP peer session, its
//                        server's socket), buffers, timers, parked Receive.
//                        A closed connection keeps its record (and, after a
//                        peer FIN/reset, the bytes nobody received yet) in a
//                        bounded history.
//   attempts_  OpenClient calls in progress (resolver, socket, deadline).
//   resolves_  name lookups in progress (at most kMaxNameLookups):
//              getaddrinfo runs on the engine's ResolverPool threads, never
//              on the loop; the result is posted back and found by number
//              (or not: cancelled, or after Shutdown, when the loop no longer
//              runs and the posted result is dropped unrun).
//
// Bytes: every connection's buffered bytes are charged (Conn::charged) to
// total_buffered_, which max_total_buffered_bytes bounds; those of finalized
// records also to history_bytes_ (at most a quarter of it).
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
// socket counts against max_connections. A greeting-and-close server starts
// that tail without the reactor when it can (GreetAndClose): greeting and
// FIN leave straight after accept, and the socket waits outside epoll as a
// "quick tail"; one recv 5-15 ms later ends it if the peer has closed or
// reset by then, and hands it to the reactor's tail otherwise.
//
// While a stream connection does not read (after the peer's FIN, or paused
// by a full buffer) it waits for socket errors instead (async_wait
// wait_error: EPOLLERR/EPOLLHUP), so a reset is still seen.
#ifndef SOCKAGENT_AGENT_ENGINE_IMPL_H_
#define SOCKAGENT_AGENT_ENGINE_IMPL_H_

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/address.h"
#include "agent/byte_queue.h"
#include "agent/engine.h"
#include "agent/fifo.h"
#include "agent/prober.h"
#include "agent/resolver.h"
#include "agent/unix_path.h"

namespace sockagent {
namespace engine_internal {

// Every I/O object is bound to the io_context's own executor rather than
// Asio's default type-erased any_io_executor: a socket object shrinks from
// 88 to 40 bytes and a timer from 120 to 72, per connection.
using Executor = asio::io_context::executor_type;
using StreamProtocol = asio::generic::stream_protocol;
using StreamSocket = asio::basic_stream_socket<StreamProtocol, Executor>;
using StreamAcceptor = asio::basic_socket_acceptor<StreamProtocol, Executor>;
using UdpSocket = asio::basic_datagram_socket<asio::ip::udp, Executor>;
using Timer =
    asio::basic_waitable_timer<std::chrono::steady_clock,
                               asio::wait_traits<std::chrono::steady_clock>,
                               Executor>;
using IpEndpoints = std::vector<asio::ip::tcp::endpoint>;

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
};

// One connection: TCP or UNIX stream, UDP client, or UDP peer session. Kept
// small on purpose (DESIGN.md: an idle connection costs well under 1 KiB):
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
  bool read_armed = false;
  bool write_armed = false;
  bool read_paused = false;   // Buffer bound reached; see ResumeReading.
  bool total_paused = false;  // Also listed in total_paused_.
  bool error_armed = false;   // A wait_error is pending.
  bool hangup = false;        // Hung up without an error: watch no more.
  bool eof = false;           // Peer FIN seen.
  bool fin_wanted = false;    // shutdown(send) once the send buffer drains.
  bool fin_sent = false;
  bool finalized = false;  // Socket closed: a history record now.
  // A socket not (yet) handed to the reactor: just accepted, or a quick
  // tail (see EngineImpl::GreetAndClose); -1 otherwise.
  int raw_fd = -1;
  uint64_t charged = 0;  // What this connection adds to total_buffered_.
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

  bool stopped() const { return info.state == ServerState::kStopped; }
};

// An OpenClient in progress.
struct ClientAttempt {
  uint64_t id = 0;
  ClientSpec spec;
  Done<absl::StatusOr<ConnectionInfo>> done;
  std::unique_ptr<Timer> timer;  // min(connect timeout, RPC deadline).
  absl::Duration timeout;
  uint64_t resolve_id = 0;  // Non-zero while the name lookup runs.
  std::string target;       // "host:port" or "unix:/path", for messages.
  std::vector<StreamProtocol::endpoint> endpoints;
  size_t next = 0;     // Next endpoint to try.
  std::string trying;  // Address being tried now, for messages.
  absl::Status last_error;
  std::optional<asio::ip::address> source_address;
  uint16_t source_port = 0;
  std::unique_ptr<StreamSocket> stream;
  std::unique_ptr<UdpSocket> udp;
  UniqueFd unix_target;  // UNIX: the O_PATH file connect() goes through.
};

struct LookupQuery {
  std::string host;
  std::string port;  // Decimal or a service name.
  Transport transport = Transport::kTcp;
  Family family = Family::kUnspecified;
  // Servers: "" means every local address of the family, and the family is
  // a filter. Clients: "" is invalid and the family only orders results.
  bool passive = false;
};

struct PendingResolve {
  LookupQuery query;
  std::optional<asio::ip::address> literal;  // Numeric host, named port.
  Done<absl::StatusOr<IpEndpoints>> done;
};

// A Stream attached to a connection (engine_stream.cc).
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

using EventKind = EngineEventKind;

// One watcher of live events (see Engine::Subscribe).
struct Watcher {
  WatchFilter filter;
  std::optional<uint64_t> server_num;  // Parsed filter ids.
  std::optional<uint64_t> conn_num;
  uint32_t kinds = ~0u;  // Bit per EngineEventKind.
  size_t limit = kDefaultWatchQueueEvents;
  bool active = false;  // Snapshot taken (or none asked): live events flow.
  std::deque<EngineEvent> queue;
  uint64_t lost = 0;
  uint64_t last_lost_seq = 0;
  uint64_t bytes = 0;  // EventBytes of what `queue` holds.
  std::shared_ptr<const std::function<void()>> wake;
};

// What a queued event costs against EngineOptions::max_watch_bytes.
uint64_t EventBytes(const EngineEvent& e);

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineOptions& options);
  ~EngineImpl() override;

  // Starts the loop thread. Called once, by Engine::Create.
  void Start();

  const EngineOptions& options() const override { return options_; }
  void StartServer(ServerSpec spec,
                   Done<absl::StatusOr<ServerInfo>> done) override;
  void StopServers(Selector selector, bool close_connections,
                   Done<absl::StatusOr<StopResult>> done) override;
  void ListServers(ServerFilter filter,
                   Done<absl::StatusOr<Page<ServerInfo>>> done) override;
  void OpenClient(ClientSpec spec, absl::Time deadline,
                  Done<absl::StatusOr<ConnectionInfo>> done) override;
  void ListConnections(
      ConnectionFilter filter,
      Done<absl::StatusOr<Page<ConnectionInfo>>> done) override;
  void Send(std::string connection_id, std::string data,
            Done<absl::StatusOr<SendResult>> done) override;
  uint64_t Receive(std::string connection_id, ReceiveSpec spec,
                   Done<absl::StatusOr<ReceiveResult>> done) override;
  void CancelReceive(uint64_t token) override;
  void CloseConnections(Selector selector, CloseMode mode,
                        Done<absl::StatusOr<CloseResult>> done) override;
  void CheckWatchFilter(const WatchFilter& filter,
                        Done<absl::Status> done) override;
  absl::StatusOr<uint64_t> Subscribe(WatchFilter filter, size_t queue_limit,
                                     std::function<void()> wake) override;
  std::vector<EngineEvent> Drain(uint64_t watcher, size_t max) override;
  void Unsubscribe(uint64_t watcher) override;
  size_t QueuedEvents(uint64_t watcher) override;
  uint64_t Probe(ProbeSpec spec,
                 Done<absl::StatusOr<ProbeReport>> done) override;
  void CancelProbe(uint64_t token) override;
  void AttachStream(std::string connection_id, bool close_on_detach,
                    Done<absl::StatusOr<StreamAttachment>> done) override;
  void OpenStream(ClientSpec spec, absl::Time deadline,
                  Done<absl::StatusOr<StreamAttachment>> done) override;
  uint64_t StreamReceive(uint64_t attachment, size_t max_bytes,
                         Done<absl::StatusOr<StreamChunk>> done) override;
  void StreamSend(uint64_t attachment, std::string data,
                  Done<absl::Status> done) override;
  void StreamShutdownWrite(uint64_t attachment,
                           Done<absl::Status> done) override;
  void DetachStream(uint64_t attachment) override;
  void Shutdown() override;

 private:
  // ---- engine_impl.cc: posting, registry, lists, Send/Receive/Close API.
  // Runs fn(done) under the engine lock: inline on the caller's thread, or
  // posted to the loop when this thread holds the lock already. Once the
  // engine stopped accepting work, answers done at once with Unavailable.
  template <typename T, typename Fn>
  void PostWork(Done<T> done, Fn fn);
  // The same for work without a `done`; dropped once the engine stopped
  // accepting work.
  template <typename Fn>
  void RunOrPost(Fn fn);

  // Holds the engine lock and marks this thread as its holder.
  class LoopLock {
   public:
    explicit LoopLock(EngineImpl* engine) : engine_(engine), prev_(holder_) {
      engine_->loop_mu_.Lock();
      holder_ = engine_;
    }
    ~LoopLock() {
      holder_ = prev_;
      engine_->loop_mu_.Unlock();
    }
    LoopLock(const LoopLock&) = delete;
    LoopLock& operator=(const LoopLock&) = delete;

   private:
    EngineImpl* const engine_;
    EngineImpl* const prev_;
  };
  bool HeldByThisThread() const { return holder_ == this; }
  // Wraps an Asio completion handler so it runs under the engine lock.
  template <typename F>
  auto Locked(F f) {
    return [this, f = std::move(f)](auto&&... args) mutable {
      LoopLock lock(this);
      f(std::forward<decltype(args)>(args)...);
    };
  }
  void ShutdownOnLoop();

  Conn* FindConn(uint64_t num);
  Server* FindServer(uint64_t num);
  // By id; NotFound names the id.
  absl::StatusOr<Conn*> LookupConn(absl::string_view id);
  ConnectionInfo Snapshot(const Conn& c) const;
  ServerInfo Snapshot(const Server& s) const;
  uint64_t NewConnNum() { return next_conn_num_++; }
  Conn& AddConn(std::unique_ptr<Conn> conn);
  // The one admission check for a new socket (accept, UDP session,
  // OpenClient): sockets held (open or in a closing tail) plus connects in
  // progress against max_connections.
  bool AtConnectionLimit() const {
    return conns_live_ + attempts_.size() >= options_.max_connections;
  }

  // ---- Byte accounting (engine_impl.cc).
  // What `c` holds now: buffered payload plus kDatagramOverheadBytes per
  // queued datagram.
  static uint64_t RecvCharge(const Conn& c);
  static uint64_t SendCharge(const Conn& c);
  // Brings total_buffered_ (and history_bytes_) up to date after c's
  // buffers changed; call after every change.
  void Recharge(Conn& c);
  // Bytes the agent-wide bound still admits.
  uint64_t TotalRoom() const {
    const uint64_t cap = options_.max_total_buffered_bytes;
    return total_buffered_ >= cap ? 0 : cap - total_buffered_;
  }
  // ResourceExhausted naming max_total_buffered_bytes if `more` bytes do
  // not fit; `what` starts the message ("send conn-4").
  absl::Status CheckTotalRoom(absl::string_view what, uint64_t more) const;
  // Reading of `c` stopped for the agent-wide bound: resumed (posted) once
  // the total falls to three quarters of it.
  void PauseForTotal(Conn& c);
  void ResumeTotalPaused();
  // Discards the unreceived bytes of a history record (history bound).
  void DiscardHistoryBytes(Conn& c);

  void DoListServers(const ServerFilter& filter,
                     Done<absl::StatusOr<Page<ServerInfo>>> done);
  void DoListConnections(const ConnectionFilter& filter,
                         Done<absl::StatusOr<Page<ConnectionInfo>>> done);
  void DoSend(absl::string_view id, std::string data,
              Done<absl::StatusOr<SendResult>> done);
  // `attachment`: the Stream receiving (0: a Receive call, refused while
  // a Stream is attached).
  void DoReceive(absl::string_view id, const ReceiveSpec& spec, uint64_t token,
                 Done<absl::StatusOr<ReceiveResult>> done,
                 uint64_t attachment = 0);
  void DoCancelReceive(uint64_t token);
  void DoCloseConnections(const Selector& selector, CloseMode mode,
                          Done<absl::StatusOr<CloseResult>> done);

  // Takes what a Receive may take now (data, end of stream or the closed
  // connection's status).
  absl::StatusOr<ReceiveResult> TakeReceive(Conn& c, const ReceiveSpec& spec);
  // True when a parked Receive on `c` can complete.
  bool ReceiveReady(const Conn& c, const ReceiveSpec& spec,
                    size_t* scanned) const;
  // Stream transports: how many bytes a Receive with `spec` takes now; 0
  // while its condition (min_bytes, delimiter) is unmet and the peer has
  // not closed. `scanned` (optional) carries the delimiter search forward.
  size_t ReadyBytes(const Conn& c, const ReceiveSpec& spec,
                    size_t* scanned) const;
  // Completes the parked Receive of `c`, if any, with TakeReceive (or
  // Cancelled, taking nothing, when its caller is gone).
  void CompleteReceive(Conn& c);
  static bool CallerGone(const PendingReceive& pending);
  // A second Receive on `c` (whose receive is parked, caller alive):
  // waits as c.receive->next, or fails at once when one waits already.
  void ContendReceive(Conn& c, const ReceiveSpec& spec, uint64_t token,
                      Done<absl::StatusOr<ReceiveResult>> done);
  void OnGiveWayTimer(uint64_t num, uint64_t token);
  void NotifyReceiver(Conn& c) {
    if (c.receive != nullptr &&
        ReceiveReady(c, c.receive->spec, &c.receive->scanned)) {
      CompleteReceive(c);
    }
  }
  void OnReceiveTimer(uint64_t num, uint64_t token);

  // History bounds: trimming is posted, so no caller ever sees the object
  // it is working on disappear.
  void ScheduleTrim();
  void TrimHistory();

  // ---- engine_watch.cc: live events. Fans an event out to the bounded
  // queues of matching watchers. Loop thread; never blocks on a watcher;
  // costs one atomic load when nobody watches. `data`: received bytes.
  void Emit(EventKind kind, uint64_t server_num, uint64_t conn_num,
            uint64_t size = 0, absl::string_view data = {},
            absl::string_view message = {});
  // Pushes the snapshot events of watcher `id` and activates it.
  void TakeSnapshot(uint64_t id);
  // Queues `e` for `w` if the agent-wide watch bytes allow; false (and the
  // event counted lost for `w`) otherwise. Caller holds watch_mu_.
  bool QueueEvent(Watcher& w, EngineEvent e, uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_);
  void NoteReleased(uint64_t bytes) const {
    if (options_.on_memory_released && bytes > 0) {
      options_.on_memory_released(bytes);
    }
  }
  bool WatcherMatches(const Watcher& w, EventKind kind, uint64_t server_num,
                      uint64_t conn_num, const Labels* labels) const;

  // ---- engine_stream.cc: Stream attachments.
  absl::StatusOr<StreamAttachment> DoAttach(Conn& c, bool close_on_detach);
  void DoStreamReceive(uint64_t attachment, size_t max_bytes, uint64_t token,
                       Done<absl::StatusOr<StreamChunk>> done);
  void DoStreamSend(uint64_t attachment, std::string data,
                    Done<absl::Status> done);
  void DoStreamShutdownWrite(uint64_t attachment, Done<absl::Status> done);
  void DoDetachStream(uint64_t attachment);
  // Why `op` cannot proceed on closed `c`: Aborted after a reset,
  // Unavailable after an error or at shutdown, FailedPrecondition else.
  absl::Status ClosedStatus(const Conn& c, absl::string_view op) const;
  // Queues a waiting StreamSend once the send buffer has room for it, or
  // fails it once the connection closed. Called whenever c's send buffer
  // drains or c closes.
  void PumpStreamSend(Conn& c);
  // The attachment of a live connection; null when detached or gone.
  Attachment* FindAttachment(uint64_t token);
  // Its connection (and the attachment in `*attachment`); null when either
  // is gone.
  Conn* AttachedConn(uint64_t token, Attachment** attachment);

  // ---- engine_conn.cc: connection I/O and closing.
  void StartConnection(Conn& c, absl::Duration ttl,
                       absl::Duration idle_timeout);
  void ArmRead(Conn& c);
  void OnReadable(uint64_t num, const asio::error_code& ec);
  void ReadStream(Conn& c);
  void ReadUdpClient(Conn& c);
  // While a stream connection does not read (peer FIN, or paused), waits
  // for a socket error so a reset is still noticed.
  void ArmErrorWatch(Conn& c);
  void OnErrorWatch(uint64_t num, const asio::error_code& ec);
  // Bytes the next read may take without exceeding a bound (0: pause).
  size_t ReadRoom(const Conn& c) const;
  void DeliverStream(Conn& c, const char* data, size_t n);
  void ResumeReading(Conn& c);
  void OnPeerFin(Conn& c);
  void OnStreamError(Conn& c, const asio::error_code& ec, absl::string_view op);

  // `stream`: a StreamSend, which waited for room already and may take the
  // buffer past send_buffer_bytes by this one chunk.
  absl::StatusOr<SendResult> QueueSend(Conn& c, std::string data,
                                       bool stream = false);
  // Send's answer once writing found `c` broken (it is finalized).
  absl::Status SendFailure(const Conn& c, uint64_t lost) const;
  void Flush(Conn& c);
  void ArmWrite(Conn& c);
  void OnWritable(uint64_t num, const asio::error_code& ec);
  void SendFin(Conn& c);
  void FlushUdpClient(Conn& c);
  // Appends a datagram to c's receive queue, or drops and counts it.
  void BufferDatagram(Conn& c, const char* data, size_t n);

  // Graceful: flush, FIN, drain until peer FIN or close_linger. Abort: RST.
  void StartClose(Conn& c, CloseReason reason, std::string detail, bool abort);
  // Bookkeeping of "this connection is now closed" (state, counters,
  // timers, parked Receive, event) without touching the socket.
  void MarkClosed(Conn& c, CloseReason reason, std::string detail);
  // Closes the socket (abort: SO_LINGER 0, RST) and files the record.
  void Finalize(Conn& c, bool abort);
  void ArmLingerTimer(Conn& c, absl::Duration after);
  // Hands c.raw_fd to the reactor (c.stream). False: it could not, and the
  // connection is finalized with the error.
  bool AdoptSocket(Conn& c);
  // Quick tails: greeting-and-close connections whose greeting and FIN
  // went out at accept wait outside the reactor; a loop-wide timer settles
  // each one once, with one recv: the peer's FIN or reset finalizes it,
  // anything else (silence, bytes) hands it to the reactor's tail.
  void ArmQuickTailTimer();
  void CheckQuickTails();
  void SettleQuickTail(Conn& c, absl::Duration age);
  void ShutdownWrite(Conn& c);
  void Touch(Conn& c);
  void OnConnTimer(uint64_t num, int which);

  // ---- engine_server.cc: servers, listeners, UDP sockets and sessions.
  void DoStartServer(ServerSpec spec, Done<absl::StatusOr<ServerInfo>> done);
  void BindIpServer(ServerSpec spec,
                    const std::shared_ptr<const std::string>& greeting,
                    const IpEndpoints& endpoints,
                    Done<absl::StatusOr<ServerInfo>> done);
  absl::Status BindAll(Server& s, const ServerSpec& spec,
                       const IpEndpoints& endpoints, bool* retry);
  absl::Status BindUnix(Server& s, const ServerSpec& spec);
  void ActivateServer(std::unique_ptr<Server> server,
                      Done<absl::StatusOr<ServerInfo>> done);
  void ArmAccept(Server& s, size_t index);
  void OnAcceptReady(uint64_t server_num, size_t index,
                     const asio::error_code& ec);
  // `fd`: a socket from accept4 (non-blocking, close-on-exec), now ours;
  // `remote`/`remote_len`: the peer's address as accept4 reported it.
  void OnAccepted(Server& s, const Listener& listener, int fd,
                  const sockaddr_storage& remote, socklen_t remote_len);
  // Writes the greeting of a greeting-and-close server and its FIN straight
  // after accept and leaves a quick tail. False when the greeting did not
  // go out whole (`*greeted`: the bytes that did): the reactor path goes on.
  bool GreetAndClose(Server& s, Conn& c, size_t* greeted);
  void ArmUdpRead(Server& s, size_t index);
  void OnUdpReadable(uint64_t server_num, size_t index,
                     const asio::error_code& ec);
  void OnDatagram(Server& s, size_t index, const asio::ip::udp::endpoint& from,
                  const char* data, size_t n);
  Conn* NewUdpSession(Server& s, size_t index,
                      const asio::ip::udp::endpoint& from);
  // Before an echo or greeting reply of `reply_bytes` to a datagram of
  // `received` bytes from `from`: true if the server's reply budget lets it
  // go; otherwise counts the drop and emits kDatagramDropped saying why
  // (agent/engine_udp_reply.cc).
  bool AdmitUdpReply(Server& s, Conn& c, const asio::ip::udp::endpoint& from,
                     size_t received, size_t reply_bytes);
  // One datagram from a server socket to a session's peer; queued while the
  // socket is not writable. Errors are the caller's to report.
  absl::Status SendSessionDatagram(Conn& c, std::string data);
  void ArmUdpWrite(Server& s, size_t index);
  void OnUdpWritable(uint64_t server_num, size_t index,
                     const asio::error_code& ec);
  // Closes the listeners and UDP sockets (ending UDP sessions with
  // `conn_reason`, counted in `closed`); accepted stream connections stay
  // (DoStopServers closes them, in one pass for all stopped servers).
  void StopServer(Server& s, absl::string_view reason, CloseReason conn_reason,
                  uint64_t* closed);
  void DoStopServers(const Selector& selector, bool close_connections,
                     Done<absl::StatusOr<StopResult>> done);

  // ---- engine_client.cc: OpenClient and name resolution.
  void DoOpenClient(ClientSpec spec, absl::Time deadline,
                    Done<absl::StatusOr<ConnectionInfo>> done);
  void OnClientResolved(uint64_t attempt_id,
                        absl::StatusOr<IpEndpoints> endpoints);
  void ConnectNext(ClientAttempt& a);
  void OnClientConnected(uint64_t attempt_id, const asio::error_code& ec);
  void OnClientTimeout(uint64_t attempt_id);
  void FinishAttempt(uint64_t attempt_id, absl::StatusOr<ConnectionInfo> r);
  // Opens a socket for `to`, sets the options, binds the source. `*fatal`:
  // the error would repeat for every address (bad option or source).
  absl::Status OpenClientSocket(ClientAttempt& a,
                                const StreamProtocol::endpoint& to,
                                bool* fatal);
  // Completes inline (returning 0) when host and port are numeric;
  // otherwise returns an id for CancelResolve.
  // `deadline`: a lookup still queued then is not run.
  uint64_t Resolve(LookupQuery query, absl::Time deadline,
                   Done<absl::StatusOr<IpEndpoints>> done);
  void OnResolved(uint64_t resolve_id,
                  absl::StatusOr<std::vector<AddressEntry>> entries);
  void CancelResolve(uint64_t resolve_id);

  // Declared first: destroyed last, after every socket and timer.
  asio::io_context io_;
  const EngineOptions options_;

  // The engine lock (see the top of this file). Taken before post_mu_ and
  // watch_mu_, never after them.
  absl::Mutex loop_mu_;
  // The engine whose lock this thread holds (innermost), if any.
  static thread_local EngineImpl* holder_;
  // Guards the hand-over from callers to the loop: once accepting_ is false
  // nothing more is posted, so every posted `done` is sure to run.
  absl::Mutex post_mu_;
  bool accepting_ ABSL_GUARDED_BY(post_mu_) = true;
  absl::Mutex join_mu_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_ ABSL_GUARDED_BY(join_mu_);
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
  // Compared without join_mu_, which a Shutdown on another thread may hold
  // while it joins the loop.
  std::atomic<std::thread::id> loop_thread_id_{};
  std::atomic<uint64_t> next_token_{1};
  // Runs getaddrinfo. Created on the loop thread at the first name lookup;
  // destroyed by the destructor after the loop thread is joined (waiting
  // for lookups still running in libc). Its callbacks only post to io_.
  std::unique_ptr<ResolverPool> resolver_;
  // Probe calls (agent/prober.h): their own state, on the loop thread
  // without the engine lock. Destroyed before io_.
  std::unique_ptr<Prober> prober_;

  // Watchers: the loop pushes, gRPC threads drain.
  absl::Mutex watch_mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Watcher>> watchers_
      ABSL_GUARDED_BY(watch_mu_);
  uint64_t next_watcher_id_ ABSL_GUARDED_BY(watch_mu_) = 1;
  // watchers_.size(), read by Emit without the lock.
  std::atomic<size_t> watcher_count_{0};
  // Sum of every Watcher::bytes; bounded by max_watch_bytes.
  uint64_t watch_bytes_ ABSL_GUARDED_BY(watch_mu_) = 0;

  // ---- Under loop_mu_ only below (loop thread or an inline call).
  bool shutting_down_ = false;
  std::vector<char> scratch_;  // The one read buffer of the loop.
  uint64_t next_server_num_ = 1;
  uint64_t next_conn_num_ = 1;
  uint64_t next_attempt_id_ = 1;
  uint64_t next_resolve_id_ = 1;
  uint64_t event_seq_ = 0;
  // B-trees: ordered for listings and ~20 bytes per entry where std::map
  // spends 48. Iterators are invalidated by insertion and erasure; no loop
  // over them inserts or erases (AddConn runs from handlers only, history
  // trimming is posted).
  absl::btree_map<uint64_t, std::unique_ptr<Server>> servers_;
  absl::btree_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::deque<uint64_t> stopped_servers_;  // Oldest first.
  std::deque<uint64_t> closed_conns_;     // Oldest first.
  bool trim_posted_ = false;
  size_t servers_listening_ = 0;
  // Connections holding a socket (not finalized: open, or in a closing
  // tail); with attempts_, what max_connections bounds.
  size_t conns_live_ = 0;
  // Sum of every Conn::charged; bounded by max_total_buffered_bytes.
  uint64_t total_buffered_ = 0;
  // The part of it held by finalized records (the closed history).
  uint64_t history_bytes_ = 0;
  struct QuickTail {
    uint64_t conn_num = 0;
    int64_t since_ns = 0;  // Steady clock.
  };
  std::deque<QuickTail> quick_tails_;  // Oldest first.
  std::unique_ptr<Timer> quick_tail_timer_;
  bool quick_tail_armed_ = false;
  // Connections paused by the agent-wide bound (Conn::total_paused).
  std::vector<uint64_t> total_paused_;
  bool resume_posted_ = false;
  absl::flat_hash_map<uint64_t, uint64_t> receive_tokens_;  // -> conn num.
  absl::flat_hash_map<uint64_t, std::unique_ptr<ClientAttempt>> attempts_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<PendingResolve>> resolves_;
  absl::flat_hash_map<uint64_t, Attachment> attachments_;  // By token.
};

// Helpers shared by the engine_*.cc files.
// Datagrams read per readiness wakeup before yielding to other sockets.
inline constexpr int kDatagramsPerWakeup = 64;
// Either an id or a non-empty label selector: InvalidArgument otherwise.
absl::Status CheckSelector(const Selector& selector);
int64_t SteadyNowNs();
std::string ServerId(uint64_t num);
std::string ConnId(uint64_t num);
// "srv-12" -> 12 for prefix "srv-"; nullopt if malformed.
std::optional<uint64_t> ParseId(absl::string_view id, absl::string_view prefix);
absl::Status ShuttingDownError();
const char* CloseReasonText(CloseReason reason);
bool LabelsMatch(const std::shared_ptr<const Labels>& labels,
                 const Labels& selector);
std::chrono::steady_clock::duration ToSteady(absl::Duration d);
// close() of a socket descriptor Asio does not own; `abort`: SO_LINGER 0
// first, so the peer gets RST.
void CloseDescriptor(int fd, bool abort);

// Here so every engine_*.cc file can post public calls.
template <typename T, typename Fn>
void EngineImpl::PostWork(Done<T> done, Fn fn) {
  if (!HeldByThisThread()) {
    LoopLock lock(this);
    bool accepting = false;
    {
      absl::MutexLock post_lock(&post_mu_);
      accepting = accepting_;
    }
    if (!accepting || shutting_down_) {
      done(ShuttingDownError());
      return;
    }
    fn(std::move(done));
    return;
  }
  {
    absl::MutexLock lock(&post_mu_);
    if (accepting_) {
      asio::post(io_, Locked([this, fn = std::move(fn),
                              done = std::move(done)]() mutable {
                   if (shutting_down_) {
                     done(ShuttingDownError());
                     return;
                   }
                   fn(std::move(done));
                 }));
      return;
    }
  }
  done(ShuttingDownError());
}

template <typename Fn>
void EngineImpl::RunOrPost(Fn fn) {
  if (!HeldByThisThread()) {
    LoopLock lock(this);
    {
      absl::MutexLock post_lock(&post_mu_);
      if (!accepting_) return;
    }
    if (!shutting_down_) fn();
    return;
  }
  absl::MutexLock lock(&post_mu_);
  if (!accepting_) return;
  asio::post(io_, Locked([this, fn = std::move(fn)]() mutable {
               if (!shutting_down_) fn();
             }));
}

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_IMPL_H_
