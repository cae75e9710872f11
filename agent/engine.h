// The socket engine: owns every server (listener) and connection of the
// agent; one Asio loop thread waits for readiness and timers.
//
// Threads: every public method may be called from any thread. It takes the
// engine lock and does its work on the caller's thread (socket syscalls
// included), so `done` may run before the method returns, on the caller's
// thread; work that must wait (a parked Receive, a connect, a full send
// buffer) completes later on the loop thread. Either way `done` runs exactly
// once (also on shutdown, with an error), with the engine lock held: it must
// not block, and must not destroy the engine; it may call the engine again
// (that call is then queued to the loop, not run inside the first). The gRPC
// layer only fills a response and calls Finish(). Once Shutdown() has begun,
// new calls are answered at once, on the caller's thread, with Unavailable
// "agent shutting down".
//
// Bounds (EngineOptions): servers, connections, per-connection receive and
// send buffers, all buffered bytes of the agent together, Send size, UDP
// sessions per server, name lookups in progress, closed-connection history.
// What happens at each bound is written beside its option.
//
// Example:
//   ResolverPool resolver({.threads = 4, .max_queued = 256});
//   auto engine = Engine::Create(EngineOptions{}, &resolver);
//   ServerSpec spec;
//   spec.bind.host = "127.0.0.1";
//   spec.behavior.kind = BehaviorKind::kEcho;
//   (*engine)->StartServer(spec, [](absl::StatusOr<ServerInfo> s) { ... });
#ifndef SOCKAGENT_AGENT_ENGINE_H_
#define SOCKAGENT_AGENT_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine_counters.h"
#include "agent/engine_types.h"
#include "agent/policy.h"
#include "agent/udp_budget.h"

namespace sockagent {

struct EngineOptions {
  // StartServer beyond this: ResourceExhausted.
  uint32_t max_servers = 1024;
  // Listening servers with per-server metrics series (ServerSpec::metrics).
  uint32_t max_metrics_servers = 64;
  // Sockets held for connections: open ones (all origins, UDP sessions
  // included), closed ones still in their graceful-close tail (up to
  // close_linger), and OpenClient calls connecting. An accept beyond it is
  // closed at once (RST) and counted in connections_rejected, as is a new
  // UDP peer's datagram (also counted dropped); OpenClient beyond it:
  // ResourceExhausted.
  uint32_t max_connections = 16384;
  // Per connection. When the receive buffer is full the engine stops reading
  // the socket (TCP flow control slows the peer; no byte dropped); UDP
  // datagrams beyond it are dropped and counted. A queued datagram costs
  // its payload plus kDatagramOverheadBytes (recv_buffered shows payload
  // bytes only).
  uint64_t recv_buffer_bytes = 4 << 20;
  // Per connection (an echo's replies included). Send beyond it:
  // ResourceExhausted, nothing queued. Queued datagrams cost as above.
  uint64_t send_buffer_bytes = 4 << 20;
  // Every buffered byte of the agent together: receive and send buffers of
  // all connections and the bytes closed connections keep for Receive (each
  // datagram costing as above). Must not be 0. When it is reached the
  // engine stops reading TCP/UNIX sockets (as for a full receive buffer;
  // reading resumes once the total falls to three quarters), drops and
  // counts arriving UDP datagrams, refuses Send (ResourceExhausted naming
  // this limit, nothing queued), drops echo replies of UDP servers, and
  // refuses accepts that would queue a greeting (as for max_connections).
  // Closed connections keep at most a quarter of it: beyond that, the
  // unreceived bytes of the oldest closed connections are discarded first,
  // and Receive on such a connection is FailedPrecondition saying so.
  uint64_t max_total_buffered_bytes = uint64_t{1} << 30;
  // One Send call: InvalidArgument above it.
  uint64_t max_send_bytes = 1 << 20;
  // One Receive answer: at most this many bytes.
  uint64_t max_receive_bytes = 1 << 20;
  // Per UDP server unless the spec says fewer; a new peer beyond it: its
  // datagram is dropped and counted.
  uint32_t max_udp_sessions_per_server = 1024;
  absl::Duration udp_session_idle_timeout = absl::Seconds(60);
  // What UDP echo and greeting servers may send back (agent/udp_budget.h):
  // a reply beyond it is not sent, counted in replies_dropped and shown as
  // a kDatagramDropped event whose message says which bound. Zero fields:
  // no bound.
  UdpReplyLimits udp_reply = kDefaultUdpReplyLimits;
  // Closed connections (and stopped servers) kept for listing; the oldest
  // is forgotten first.
  uint32_t closed_connections_kept = 1000;
  absl::Duration default_connect_timeout = absl::Seconds(10);
  // A graceful close flushes the send buffer, sends FIN, then reads (and
  // discards) until the peer's FIN, so the peer never sees a reset for
  // bytes it sent late. This bounds that wait: when it expires the socket is
  // closed (with RST if bytes are still unsent; they count as
  // send_bytes_lost). Zero: close right after the flush attempt.
  absl::Duration close_linger = absl::Seconds(5);
  // What servers may bind and clients may dial (agent/policy.h); refusals
  // are PermissionDenied naming the rule. Default: everything allowed.
  Policy policy;
  // Every event queued for every watcher together, in bytes (each event's
  // data, message and object snapshot, plus its bookkeeping). An event that
  // would go beyond it is dropped for that watcher and counted as lost, as
  // for a full queue (snapshot events too). Must not be 0.
  uint64_t max_watch_bytes = 32 << 20;
  // Told (on the thread that freed them, with the engine lock or the watch
  // lock held: it must only count) of large amounts of memory the engine
  // gave up: a watcher's queue at Unsubscribe, closed connections' records
  // and bytes leaving the history. The daemon uses it to hand freed memory
  // back to the kernel (service/malloc_tuning.h). Null: nobody is told.
  std::function<void(uint64_t bytes)> on_memory_released;
  // Never look a host name up (only numeric hosts; service names still come
  // from /etc/services): a name is PermissionDenied. For the fuzzer and for
  // agents that must not touch DNS (--no-name-lookups). The resolver pool
  // given to Engine::Create must be built with numeric_hosts_only too.
  bool numeric_hosts_only = false;
};

class ResolverPool;  // agent/resolver.h

class Engine {
 public:
  // Starts the loop thread. `resolver` runs the engine's name lookups
  // (OpenClient, StartServer) and is shared with whoever else uses it (the
  // daemon's Resolve RPC): its size bounds them all, and when its queue is
  // full a lookup fails at once with ResourceExhausted (agent/connector.h).
  // Owned by the caller; must outlive the engine. InvalidArgument for bad
  // options, a null resolver, or numeric_hosts_only with a resolver that
  // looks host names up.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const EngineOptions& options, ResolverPool* resolver);

  virtual ~Engine() = default;

  virtual const EngineOptions& options() const = 0;

  // Agent-wide counters, kept up to date as events happen; any thread reads
  // them without the engine lock (service/metrics.h).
  virtual const EngineCounters& counters() const = 0;

  // Binds (and listens) every address `spec.bind` names: host "" is one
  // socket per family (0.0.0.0 and [::] with IPV6_V6ONLY; with port 0 the
  // second gets the port the first got); a name binds every address it
  // resolves to. A UNIX path must be absolute (or "@name"); one that exists
  // already is AlreadyExists (never unlinked, unless spec.replace_stale and
  // it is a dead socket); the socket file is removed when the server stops,
  // if it is still the one bound. A port in use is AlreadyExists.
  virtual void StartServer(ServerSpec spec,
                           Done<absl::StatusOr<ServerInfo>> done) = 0;

  // close_connections closes accepted connections gracefully (reason
  // kServerStopped). UDP peer sessions always end with their server (they
  // live on its socket). Stopping a stopped server returns it unchanged.
  virtual void StopServers(Selector selector, bool close_connections,
                           Done<absl::StatusOr<StopResult>> done) = 0;

  virtual void ListServers(ServerFilter filter,
                           Done<absl::StatusOr<Page<ServerInfo>>> done) = 0;

  // Resolves off the loop thread, on the ResolverPool given to Create (at
  // most kMaxNameLookups at once, for StartServer too; ResourceExhausted
  // when the pool's queue is full), then connects; `deadline` is the
  // RPC's.
  virtual void OpenClient(ClientSpec spec, absl::Time deadline,
                          Done<absl::StatusOr<ConnectionInfo>> done) = 0;

  virtual void ListConnections(
      ConnectionFilter filter,
      Done<absl::StatusOr<Page<ConnectionInfo>>> done) = 0;

  // Queues `data` and writes what the socket takes now. If that write finds
  // the connection broken, the connection closes and Send fails: Aborted
  // when the peer reset it (or closed a UNIX socket), Unavailable for other
  // errors; its bytes count in send_bytes_lost.
  virtual void Send(std::string connection_id, std::string data,
                    Done<absl::StatusOr<SendResult>> done) = 0;

  // Parks until data, end of stream, error, `spec.wait` or `spec.deadline`.
  // Returns a token (never 0) for CancelReceive, which completes a parked
  // receive at once (used when the RPC is cancelled): Cancelled, taking
  // nothing, when spec.caller_gone says so, else with whatever it has.
  // Cancelling a finished receive does nothing. `done` may run before
  // Receive returns. A second Receive while one is parked takes its place
  // when the parked one's caller is gone (ReceiveSpec::caller_gone) or the
  // parked one ends within kReceiveGiveWay; otherwise it is
  // FailedPrecondition (the first keeps waiting). A third is
  // FailedPrecondition at once.
  //
  // Bytes the peer sent before a FIN or a reset stay receivable after the
  // connection closed; once drained: peer FIN -> OK end_of_stream; reset ->
  // Aborted "receive conn-N: connection reset by peer"; shutdown ->
  // Unavailable "agent shutting down" (also for receives parked at
  // Shutdown); error -> Unavailable naming it; any local close (Close,
  // timeouts, server stopped) -> FailedPrecondition, bytes discarded. Bytes
  // discarded from the closed history (see max_total_buffered_bytes) ->
  // FailedPrecondition saying so.
  virtual uint64_t Receive(std::string connection_id, ReceiveSpec spec,
                           Done<absl::StatusOr<ReceiveResult>> done) = 0;
  virtual void CancelReceive(uint64_t token) = 0;

  // Labels of specs (StartServer, OpenClient, OpenStream), selectors and
  // filters beyond agent/labels.h's bounds are InvalidArgument.
  virtual void CloseConnections(Selector selector, CloseMode mode,
                                Done<absl::StatusOr<CloseResult>> done) = 0;

  // Attaches a stream to an open (or peer-closed) connection. Failed
  // precondition when another stream is attached, a Receive is waiting, or
  // the connection is closed. `close_on_detach`: DetachStream closes it
  // gracefully (reason kStreamEnded).
  virtual void AttachStream(std::string connection_id, bool close_on_detach,
                            Done<absl::StatusOr<StreamAttachment>> done) = 0;
  // OpenClient, then attaches the new connection in the same loop turn (no
  // one else can attach first); it closes when the stream detaches.
  virtual void OpenStream(ClientSpec spec, absl::Time deadline,
                          Done<absl::StatusOr<StreamAttachment>> done) = 0;
  // Parks until the attached connection has bytes (up to `max_bytes`, 0:
  // max_receive_bytes), datagrams, or ends. Returns a token for
  // CancelReceive (which completes it at once, empty). A detached token:
  // FailedPrecondition.
  virtual uint64_t StreamReceive(uint64_t attachment, size_t max_bytes,
                                 Done<absl::StatusOr<StreamChunk>> done) = 0;
  // Queues `data` (UDP: one datagram) like Send, but instead of refusing
  // when the connection's send buffer is full it waits for room: `done`
  // runs once the bytes are queued. That is the stream's backpressure: the
  // caller sends the next chunk only after `done`, so at most one chunk
  // waits beyond send_buffer_bytes. Errors as Send's (a closed connection:
  // the reason; above max_send_bytes: InvalidArgument). At most one
  // StreamSend at a time per attachment (FailedPrecondition otherwise).
  virtual void StreamSend(uint64_t attachment, std::string data,
                          Done<absl::Status> done) = 0;
  // The caller's half-close: FIN once the queued bytes are written (stream
  // transports; UDP has none and completes at once). `done` runs when the
  // FIN went out, or with the error that kept it (and queued bytes) from
  // going out.
  virtual void StreamShutdownWrite(uint64_t attachment,
                                   Done<absl::Status> done) = 0;
  // Ends the attachment: a waiting StreamSend or StreamShutdownWrite
  // completes with Cancelled, a parked StreamReceive completes empty; an opened
  // connection closes gracefully (kStreamEnded). Idempotent; any thread.
  virtual void DetachStream(uint64_t attachment) = 0;

  // Registers a watcher with a bounded queue of `queue_limit` events (0:
  // kDefaultWatchQueueEvents; capped at kMaxWatchQueueEvents). Events are
  // produced on the loop thread and never wait for a watcher: when its queue
  // is full, further events are dropped and counted, and the queue later
  // shows one kEventsLost event (with the count) where they are missing.
  // With filter.snapshot, the queue first receives kSnapshotServer and
  // kSnapshotConnection for every listening server and open connection
  // matching the filter, then kSnapshotEnd (the snapshot is bounded by the
  // object limits, not by queue_limit); live events follow it. Without,
  // every event produced after Subscribe returns is seen.
  // `wake` is called (with the engine lock held but not the watch lock, so
  // it may Drain) when the queue turns non-empty; it must not block. It may
  // still run once after Unsubscribe returned, so what it captures must stay
  // alive by itself (a shared_ptr). Errors: InvalidArgument for a malformed id,
  // Unavailable once Shutdown began. Any thread.
  virtual absl::StatusOr<uint64_t> Subscribe(WatchFilter filter,
                                             size_t queue_limit,
                                             std::function<void()> wake) = 0;
  // Checks that the ids a watch filters on name objects the agent has (a
  // stopped server or closed connection still in the history counts): a
  // malformed id is InvalidArgument, an unknown one NotFound naming it.
  // Ids are never reused, so a later Subscribe with the same filter sees
  // the same objects. Like every call here, `done` runs inline on a thread
  // that does not hold the engine lock (any gRPC thread), else later on
  // the loop.
  virtual void CheckWatchFilter(const WatchFilter& filter,
                                Done<absl::Status> done) = 0;
  // Takes up to `max` queued events, oldest first. Any thread.
  virtual std::vector<EngineEvent> Drain(uint64_t watcher, size_t max) = 0;
  // Idempotent. Any thread.
  virtual void Unsubscribe(uint64_t watcher) = 0;
  // Events queued for `watcher` now (tests and limits). Any thread.
  virtual size_t QueuedEvents(uint64_t watcher) = 0;

  // Dials every target of `spec` concurrently on the loop (agent/prober.h:
  // bounds, classes, what a bad spec is answered). `done` runs once: on the
  // loop thread, or at once on this thread for a bad spec, a full agent
  // (ResourceExhausted) or a stopped engine (Unavailable). Returns a token
  // for CancelProbe (ends the call with Cancelled). Any thread.
  virtual uint64_t Probe(ProbeSpec spec,
                         Done<absl::StatusOr<ProbeReport>> done) = 0;
  virtual void CancelProbe(uint64_t token) = 0;

  // Streams to spec.target at full speed (TCP) or at a rate (UDP) from the
  // loop (agent/perf.h: bounds, what is reported). `done` runs once: on the
  // loop thread, or at once on this thread for a bad spec, a full agent
  // (ResourceExhausted) or a stopped engine (Unavailable). Returns a token
  // for CancelPerf (ends the run with Cancelled). Any thread.
  virtual uint64_t Perf(PerfSpec spec,
                        Done<absl::StatusOr<PerfReport>> done) = 0;
  virtual void CancelPerf(uint64_t token) = 0;

  // ---- Faults (agent/faults.h says what each type does and where).
  //
  // AddFault validates the spec (InvalidArgument naming the field), checks
  // the target (a malformed id: InvalidArgument; an unknown server or
  // connection: NotFound), refuses a taken name (AlreadyExists) and a
  // table at kMaxFaults (ResourceExhausted), then applies the fault to
  // every open connection it targets (each one rolls the toxicity once)
  // and, later, to every new one. UpdateFault replaces everything but the
  // name and target (NotFound for an unknown name); connections keep the
  // state of a fault whose type stays. RemoveFaults takes a name (NotFound
  // if unknown), a selector on the faults' own labels, or `all`; delayed
  // bytes then leave in order, none lost. Answers the removed names.
  virtual void AddFault(FaultSpec spec,
                        Done<absl::StatusOr<FaultInfo>> done) = 0;
  virtual void UpdateFault(FaultSpec spec,
                           Done<absl::StatusOr<FaultInfo>> done) = 0;
  virtual void RemoveFaults(
      std::string name, Labels selector, bool all,
      Done<absl::StatusOr<std::vector<std::string>>> done) = 0;
  virtual void ListFaults(
      Done<absl::StatusOr<std::vector<FaultInfo>>> done) = 0;

  // Closes everything (reason kAgentShutdown; sockets closed at once, no
  // linger), completes every pending callback (parked receives, OpenClient
  // and StartServer in flight, name lookups too: Unavailable "agent shutting
  // down"), and stops the loop thread. Idempotent; blocks until done, but
  // never for a name lookup still running in libc: it ends on the resolver
  // pool and its result is dropped. Must not be called from the loop thread
  // (it aborts). The destructor calls it.
  virtual void Shutdown() = 0;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_H_
