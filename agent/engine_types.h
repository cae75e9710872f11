// The engine's values: what a caller asks for (ServerSpec, ClientSpec,
// ReceiveSpec, filters, selectors, ProbeSpec, WatchFilter) and what it gets
// back (ServerInfo, ConnectionInfo, results, events, probe reports), with
// the bounds the engine enforces on them. Plain structs, no behaviour; the
// Engine interface that takes and returns them is in engine.h.
//
//   ServerSpec spec;
//   spec.bind.host = "127.0.0.1";
//   spec.behavior.kind = BehaviorKind::kEcho;
#ifndef SOCKAGENT_AGENT_ENGINE_TYPES_H_
#define SOCKAGENT_AGENT_ENGINE_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine_counters.h"
#include "agent/faults.h"
#include "agent/labels.h"
#include "agent/policy.h"
#include "agent/tls.h"
#include "agent/types.h"
#include "agent/udp_budget.h"

namespace sockagent {

template <typename T>
using Done = absl::AnyInvocable<void(T)>;

// What one queued datagram costs against the byte bounds on top of its
// payload (receive and send buffers, max_total_buffered_bytes, and a Receive
// answer's max_bytes): its bookkeeping, and the peer address and time it
// carries in a Receive answer. Without it empty datagrams would cost nothing
// and could queue without limit.
inline constexpr uint64_t kDatagramOverheadBytes = 64;

// Name lookups (host or service names; numeric ones never look anything up)
// in progress at once, StartServer and OpenClient together; one more is
// ResourceExhausted.
inline constexpr size_t kMaxNameLookups = 64;

// Server listings (ListServers, StopServers) and the StartServer answer
// carry at most this many bytes of a greeting; ServerInfo::greeting_bytes
// tells its full size.
inline constexpr size_t kListedGreetingBytes = 4096;

// Where to bind or connect. `port` is a decimal port or a service name
// ("www"); empty means 0 (servers: pick one). `unix_path` is for
// Transport::kUnix only ('@' prefix: abstract namespace).
struct Endpoint {
  std::string host;
  std::string port;
  std::string unix_path;
};

enum class BehaviorKind { kHold, kEcho, kGreeting, kDiscard, kProxy };

struct Behavior {
  BehaviorKind kind = BehaviorKind::kHold;
  std::string greeting;  // kGreeting: sent on accept (UDP: per datagram).
  bool close_after_greeting = false;
  // kProxy (agent/proxy.h): where each accepted connection (UDP: each peer
  // session) is relayed, dialled when it arrives. No transport: the
  // server's own.
  Endpoint proxy_upstream;
  std::optional<Transport> proxy_transport;
  // kProxy: TLS toward the upstream (each upstream half a TLS client);
  // null: plain.
  std::shared_ptr<const TlsClientContext> proxy_tls;
};

struct ServerSpec {
  Transport transport = Transport::kTcp;
  Endpoint bind;
  Family family = Family::kUnspecified;
  int backlog = 0;  // 0: SOMAXCONN.
  // TCP only (SO_REUSEADDR: a restarted server can bind while connections of
  // the old one are in TIME_WAIT). Never set on UDP, where it would let a
  // second socket share the port and take its datagrams: a UDP port in use
  // is AlreadyExists whatever this says.
  bool reuse_address = true;
  Behavior behavior;
  Labels labels;
  absl::Duration ttl = absl::ZeroDuration();           // Zero: none.
  absl::Duration idle_timeout = absl::ZeroDuration();  // Accepted conns.
  uint32_t udp_max_sessions = 0;  // 0: EngineOptions default.
  absl::Duration udp_session_idle_timeout = absl::ZeroDuration();  // 0: dflt
  // UNIX, filesystem path: a socket file already at the path that nobody
  // listens on (its owner died, e.g. kill -9) is removed and the path
  // bound. A live listener or a file that is no socket stays AlreadyExists,
  // untouched. See agent/unix_path.h.
  bool replace_stale = false;
  // UDP echo and greeting replies (agent/udp_budget.h). Zeros: the agent's
  // limits; a server may only tighten them.
  UdpReplyLimits udp_reply;
  // Named servers (agent/server_name.h). "" is unnamed. A name is unique
  // among listening servers: StartServer with a name a listening server
  // holds answers that server when the specs are the same (SameServerSpec),
  // is AlreadyExists when they differ, unless `replace` (stop it, start
  // this). A stopped server frees its name.
  std::string name;
  bool replace = false;
  // Validate, resolve and decide only: nothing binds, nothing stops. The
  // answer's start_outcome says what StartServer would do.
  bool dry_run = false;
  // TLS on every accepted connection (TCP and UNIX; UDP: InvalidArgument).
  // Made and validated by the caller (TlsServerContext::Create); null: none.
  std::shared_ptr<const TlsServerContext> tls;
  // Per-server series on /metrics; at most EngineOptions::
  // max_metrics_servers listening servers have it (ResourceExhausted).
  bool metrics = false;
};

// What StartServer did (or, dry_run, would do) about the name.
enum class StartOutcome { kCreated, kUnchanged, kReplaced };

enum class ServerState { kListening, kStopped };

struct ServerCounters {
  uint64_t connections_accepted = 0;
  uint64_t connections_active = 0;
  uint64_t connections_rejected = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t datagrams_received = 0;
  uint64_t datagrams_sent = 0;
  uint64_t datagrams_dropped = 0;
  // UDP echo/greeting replies not sent because of the reply budget
  // (agent/udp_budget.h), and their bytes. Not in datagrams_dropped.
  uint64_t replies_dropped = 0;
  uint64_t reply_bytes_dropped = 0;
  // TLS servers: handshakes completed and failed (timeouts included).
  uint64_t tls_handshakes = 0;
  uint64_t tls_handshake_failures = 0;
};

struct ServerInfo {
  std::string id;
  Transport transport = Transport::kTcp;
  std::vector<SocketAddress> local_addresses;
  // behavior.greeting holds at most kListedGreetingBytes of the greeting.
  Behavior behavior;
  uint64_t greeting_bytes = 0;  // The greeting's full size.
  ServerState state = ServerState::kListening;
  ServerCounters counters;
  Labels labels;
  int backlog = 0;
  absl::Time created_at;
  absl::Time stopped_at;  // InfinitePast() while listening.
  absl::Duration ttl;
  absl::Duration idle_timeout;
  uint32_t udp_max_sessions = 0;
  absl::Duration udp_session_idle_timeout;
  std::string stop_reason;
  UdpReplyLimits udp_reply;  // UDP: the limits in force (zero: none).
  std::string name;          // "" unnamed.
  // Named servers: the spec as requested (its greeting empty: see behavior
  // and greeting_bytes), for the "same spec" rule and for listings that a
  // desired-state file can be written from. Null when unnamed.
  std::shared_ptr<const ServerSpec> requested;
  // Set in StartServer's answer only (listings: kCreated, ""): what it did,
  // and for kReplaced (or a dry run that would replace) how the old
  // server's spec differs from the request, e.g. "bind.port 9000 -> 9001".
  StartOutcome start_outcome = StartOutcome::kCreated;
  std::string start_difference;
  std::shared_ptr<const TlsServerInfo> tls;  // Null: no TLS.
  bool metrics = false;                      // ServerSpec::metrics.
};

// kPeerClosed: the peer's FIN arrived. A hold (or client) connection stays
// there, still able to Send, until closed; echo and discard connections
// finish their side and close (reason kPeerClosed). kLocalClosed: our FIN
// went out (kShutdownWrite); reading goes on.
enum class ConnectionState { kOpen, kPeerClosed, kLocalClosed, kClosed };

enum class CloseReason {
  kNone,
  kLocalClose,
  kLocalAbort,
  kPeerClosed,
  kPeerReset,
  kIdleTimeout,
  kTtlExpired,
  kServerStopped,
  kStreamEnded,
  kError,
  kAgentShutdown,
};

// kProxyUpstream: the half of a proxied connection the agent dialled for a
// proxy server (its server_id); the accepted half stays kAccepted.
enum class Origin { kOpened, kAccepted, kUdpPeer, kProxyUpstream };

struct ConnectionCounters {
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t datagrams_received = 0;
  uint64_t datagrams_sent = 0;
  uint64_t datagrams_dropped = 0;
  uint64_t recv_buffered = 0;
  uint64_t recv_buffered_peak = 0;
  uint64_t send_buffered = 0;
  uint64_t send_buffered_peak = 0;
  uint64_t send_bytes_lost = 0;
};

// What a discard server's UDP peer session counted of one Perf sender
// (agent/perf_wire.h): datagrams carrying `run_id`.
struct PerfReceiveStats {
  uint64_t run_id = 0;
  uint64_t datagrams = 0;
  uint64_t bytes = 0;
  uint64_t highest_sequence = 0;
  uint64_t lost = 0;          // highest_sequence + 1 - datagrams (>= 0).
  uint64_t out_of_order = 0;  // Arrived after a higher sequence.
  absl::Duration jitter = absl::ZeroDuration();  // RFC 3550.
  absl::Time first_at = absl::InfinitePast();
  absl::Time last_at = absl::InfinitePast();
};

struct ConnectionInfo {
  std::string id;
  Transport transport = Transport::kTcp;
  SocketAddress local;
  SocketAddress remote;
  Origin origin = Origin::kOpened;
  std::string server_id;
  ConnectionState state = ConnectionState::kOpen;
  CloseReason close_reason = CloseReason::kNone;
  std::string close_detail;
  ConnectionCounters counters;
  Labels labels;
  absl::Time opened_at;
  absl::Time closed_at;  // InfinitePast() while open.
  absl::Duration ttl;
  absl::Duration idle_timeout;
  bool stream_attached = false;
  // A proxied half: the other half's id ("" when none).
  std::string peer_connection_id;
  // Names of the faults acting on it now (agent/faults.h), in the order
  // they were applied. Empty once it closed.
  std::vector<std::string> faults;
  // UDP faults on it, ever: datagrams dropped, sent twice, held.
  uint64_t fault_datagrams_dropped = 0;
  uint64_t fault_datagrams_duplicated = 0;
  uint64_t fault_datagrams_delayed = 0;
  // Bytes read that a RECEIVED fault holds now (not yet delivered).
  uint64_t fault_received_held = 0;
  // TLS connections: what the handshake saw (its failure, if it failed).
  // Null: no TLS, or the handshake has not ended yet.
  std::shared_ptr<const TlsInfo> tls;
  bool tls_handshaking = false;  // A TLS handshake is in progress.
  // UDP peer sessions of discard servers that received Perf datagrams.
  std::optional<PerfReceiveStats> perf;
};

struct ClientSpec {
  Transport transport = Transport::kTcp;
  Endpoint remote;  // Port required (0 is InvalidArgument).
  Family family = Family::kUnspecified;
  absl::Duration connect_timeout = absl::ZeroDuration();  // 0: default.
  Endpoint source;  // Optional local host and/or port to bind first.
  bool tcp_nodelay = false;
  bool keepalive = false;
  absl::Duration keepalive_idle = absl::ZeroDuration();      // 0: kernel's.
  absl::Duration keepalive_interval = absl::ZeroDuration();  // 0: kernel's.
  uint32_t keepalive_count = 0;                              // 0: kernel's.
  Labels labels;
  absl::Duration ttl = absl::ZeroDuration();
  absl::Duration idle_timeout = absl::ZeroDuration();
  // TLS over the connection (TCP and UNIX; UDP: InvalidArgument), made by
  // the caller (TlsClientContext::Create). OpenClient (and OpenStream)
  // answer once the handshake ended: its failure is Unavailable with
  // OpenSSL's words. Null: none.
  std::shared_ptr<const TlsClientContext> tls;
};

// Either an id or a non-empty label selector (not both, not neither). A
// selector beyond the label bounds (agent/labels.h) is InvalidArgument: it
// could never match.
struct Selector {
  std::string id;
  Labels labels;
  // StopServers only: the listening server of this name (NotFound if none).
  // Exclusive with id and labels.
  std::string name = "";  // A default: Selector{id, labels} stays valid.
};

// page_size 0 means 100; above 1000 is clamped to 1000. page_token is
// opaque to callers ("" for the first page; a malformed one is
// InvalidArgument). Items are in creation order; the token marks the last
// item returned, so objects created while paging appear on a later page.
struct ServerFilter {
  Labels selector;
  std::optional<Transport> transport;
  bool include_stopped = false;
  bool metrics_only = false;  // Only servers with ServerSpec::metrics.
  size_t page_size = 0;
  std::string page_token;
};

struct ConnectionFilter {
  std::string id;  // One connection (open or in the history); "": all.
  std::string server_id;
  Labels selector;
  std::vector<ConnectionState> states;  // Empty: every state but kClosed.
  std::optional<Transport> transport;
  bool include_closed = false;  // Also the bounded closed history.
  size_t page_size = 0;
  std::string page_token;
};

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;  // Empty: no more.
};

// A bulk Stop/Close answers how many objects it acted on and the state of
// at most this many of them (the first, in creation order), so its answer
// stays bounded however many a selector matched.
inline constexpr size_t kMaxListedResults = 100;

struct StopResult {
  std::vector<ServerInfo> servers;  // At most kMaxListedResults.
  uint64_t servers_stopped = 0;     // All the selector matched.
  uint64_t connections_closed = 0;
};

struct CloseResult {
  std::vector<ConnectionInfo> connections;  // At most kMaxListedResults.
  uint64_t count = 0;                       // All the selector matched.
};

struct SendResult {
  uint64_t bytes_accepted = 0;
  uint64_t send_buffered = 0;
};

struct ReceiveSpec {
  // 0: 64 KiB. Capped by max_receive_bytes. UDP: each datagram counts its
  // payload plus kDatagramOverheadBytes; one datagram is always returned
  // whole, however large.
  size_t max_bytes = 0;
  size_t max_datagrams = 0;  // UDP; 0: no extra limit.
  // Stream transports only. Complete once this many bytes are buffered
  // (capped at max_bytes and at the receive buffer's bound; reading stopped
  // by max_total_buffered_bytes also completes it); 0 means 1. If the wait
  // ends first nothing is taken. At end of stream, or once the connection
  // closed, whatever is buffered is returned.
  size_t min_bytes = 0;
  // Stream transports only. Complete once these bytes arrived, taking up to
  // and including their first occurrence; if max_bytes (or the whole
  // receive buffer) fill without them, or reading stopped at
  // max_total_buffered_bytes, those bytes are returned. If the wait ends
  // first nothing is taken. Empty: no delimiter.
  std::string delimiter;
  absl::Duration wait = absl::ZeroDuration();
  // When the answer is due at the latest (the service passes the RPC's
  // deadline less a safety margin, so its OK reaches the caller in time).
  absl::Time deadline = absl::InfiniteFuture();
  // Optional: true once nobody waits for this answer any more (the RPC was
  // cancelled or its deadline passed). Asked under the engine lock, only
  // while the receive is parked. A parked receive whose caller is gone
  // never takes bytes: a later Receive completes it (Cancelled) and takes
  // its place instead of failing, and data arriving meanwhile stays
  // buffered for that later Receive.
  std::function<bool()> caller_gone;
};

struct DatagramInfo {
  std::string data;
  SocketAddress peer;
  absl::Time received_at;
};

struct ReceiveResult {
  std::string data;                     // Stream transports.
  std::vector<DatagramInfo> datagrams;  // UDP.
  bool end_of_stream = false;
  uint64_t recv_buffered = 0;
};

// ---- Streams (the Stream RPC): one caller attached to a connection.
//
// While attached, Receive by anyone else is FailedPrecondition; Send by
// others still works (its bytes interleave with the stream's).
struct StreamAttachment {
  uint64_t token = 0;  // For the Stream* calls below; never 0.
  ConnectionInfo connection;
};

// What one StreamReceive delivers: bytes (stream transports) or datagrams
// (UDP), or the end. `peer_closed`: the peer's FIN arrived and everything
// before it was delivered; sending is still possible. `closed`: the
// connection ended in order (a local close, timeout, server stopped, or
// both FINs) and nothing more will come; reason/detail say why. A reset,
// an error or agent shutdown is not a chunk but the call's status (Aborted,
// Unavailable), after the bytes that came before it.
struct StreamChunk {
  std::string data;
  std::vector<DatagramInfo> datagrams;
  bool peer_closed = false;
  bool closed = false;
  CloseReason reason = CloseReason::kNone;
  std::string detail;
};

// kGraceful: the connection is kClosed at once (Send/Receive see it closed);
// its socket then flushes, sends FIN and reads until the peer's FIN or
// EngineOptions::close_linger. kAbort: SO_LINGER 0 then close (RST); unsent
// bytes count in send_bytes_lost. kShutdownWrite: flush, FIN, keep reading;
// if the peer's FIN came first, the connection then closes with reason
// kPeerClosed and what the peer sent stays receivable. UDP has no FIN:
// graceful and abort both end the connection at once, and kShutdownWrite is
// InvalidArgument (for a label selector: if it selects any UDP connection,
// and then nothing is done).
enum class CloseMode { kGraceful, kAbort, kShutdownWrite };

// ---- Live events (Watch).
//
// Numbered as the proto's EventKind, so the service converts by value.
enum class EngineEventKind {
  kUnspecified = 0,
  kServerStarted = 1,
  kServerStopped = 2,
  kConnectionAccepted = 3,  // Also a new UDP peer session.
  kConnectionConnected = 4,
  kConnectionClosed = 5,
  kDataReceived = 6,
  kDataSent = 7,
  kDatagramDropped = 8,
  kError = 9,
  kEventsLost = 10,
  kSnapshotServer = 11,
  kSnapshotConnection = 12,
  kSnapshotEnd = 13,
  kConnectionPeerClosed = 14,
  // Faults (agent/faults.h): message names the fault. Added and removed
  // carry no object; applied names the connection it now acts on.
  kFaultAdded = 15,
  kFaultRemoved = 16,
  kFaultApplied = 17,
};
inline constexpr int kMaxEngineEventKind = 17;

// How long a Receive that finds another one parked on its connection waits
// for that one to end (its caller may have just cancelled) before failing
// FailedPrecondition.
inline constexpr absl::Duration kReceiveGiveWay = absl::Milliseconds(500);

// Watch queues: default and largest bound (events per watcher).
inline constexpr size_t kDefaultWatchQueueEvents = 1024;
inline constexpr size_t kMaxWatchQueueEvents = 65536;
// A data event carries at most this many first bytes of its chunk.
inline constexpr size_t kMaxWatchDataBytes = 4096;

struct EngineEvent {
  // Agent-wide, increasing. Snapshot events carry the last seq emitted
  // before the snapshot; EVENTS_LOST carries the seq of the last lost one.
  uint64_t seq = 0;
  absl::Time time;
  EngineEventKind kind = EngineEventKind::kUnspecified;
  std::string server_id;
  std::string connection_id;
  uint64_t size = 0;  // Data and dropped-datagram events: bytes.
  std::string data;   // Received data: first include_data_bytes bytes.
  std::optional<SocketAddress> peer;  // UDP data events: the datagram's peer.
  CloseReason close_reason = CloseReason::kNone;
  std::string message;  // Errors and close details, in words.
  uint64_t lost = 0;    // kEventsLost.
  // Lifecycle and snapshot events only (never data events: kept cheap).
  std::optional<ServerInfo> server;
  std::optional<ConnectionInfo> connection;
};

// Probes (Engine::Probe; agent/prober.h runs them).
struct ProbeTarget {
  Transport transport = Transport::kTcp;
  // host + port (decimal or a service name), or unix_path for kUnix.
  Endpoint endpoint;
  // Sent once connected. UDP needs one (there is no handshake to observe).
  std::string payload;
  // Wait until `payload` came back byte for byte (UDP: as one datagram).
  bool expect_echo = false;
  // TCP only: a TLS handshake after the connect (the context is made from
  // this and the host by Prober::Start, which names a bad field), then the
  // payload and its echo over TLS. Its failure ends the probe kTls.
  std::optional<TlsClientSpec> tls;
};

struct ProbeSpec {
  std::vector<ProbeTarget> targets;
  absl::Duration timeout = absl::Seconds(2);     // Per probe; 0: 2 s.
  size_t concurrency = 0;                        // In flight; 0: 64.
  absl::Time deadline = absl::InfiniteFuture();  // The whole call.
};

// kTls: connected, but the TLS handshake failed or timed out; the error is
// "TLS handshake failed: " and OpenSSL's words.
enum class ProbeClass {
  kOk,
  kRefused,
  kTimeout,
  kUnreachable,
  kDns,
  kError,
  kTls
};

// "OK", "REFUSED", ...
const char* ProbeClassName(ProbeClass c);

struct ProbeOutcome {
  ProbeClass result = ProbeClass::kError;
  std::string remote;  // The address dialled: "127.0.0.1:80", "unix:/p".
  absl::Duration connect_time = absl::ZeroDuration();  // TCP/UNIX.
  // From the first payload byte written to the last echo byte read.
  absl::Duration round_trip = absl::ZeroDuration();
  // TLS targets: from the connect to the handshake's end (either way).
  absl::Duration handshake_time = absl::ZeroDuration();
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  std::string error;  // In words; "" for OK.
};

struct ProbeReport {
  std::vector<ProbeOutcome> outcomes;  // In the order of spec.targets.
  absl::Duration took = absl::ZeroDuration();
};

// Bandwidth runs (Engine::Perf; agent/perf.h runs them, agent/perf_wire.h
// is the UDP header).
struct PerfSpec {
  Transport transport = Transport::kTcp;  // kTcp or kUdp.
  Endpoint target;                        // host + port (or service name).
  // 0: 5 s, or with `bytes` until they are sent (within max_duration).
  absl::Duration duration = absl::ZeroDuration();
  uint64_t bytes = 0;         // All streams together; 0: no bound but time.
  uint32_t parallel = 0;      // Streams (connections, UDP sockets); 0: 1.
  uint64_t udp_rate_bps = 0;  // UDP, all streams; 0: 1 Mbit/s.
  uint32_t udp_datagram_bytes = 0;  // UDP payload; 0: 1460.
  uint64_t run_id = 0;              // In every UDP header; 0: random.
  absl::Time deadline = absl::InfiniteFuture();  // The whole call.
};

// The sender's kernel view of a TCP stream (TCP_INFO), read after the last
// write and the drain.
struct PerfTcpInfo {
  bool valid = false;
  absl::Duration rtt = absl::ZeroDuration();  // tcpi_rtt (smoothed).
  absl::Duration rtt_var = absl::ZeroDuration();
  uint64_t retransmits = 0;  // tcpi_total_retrans.
  uint32_t snd_cwnd = 0;     // Segments.
  uint32_t snd_mss = 0;      // Bytes.
};

struct PerfStreamReport {
  SocketAddress local;
  SocketAddress remote;
  uint64_t bytes = 0;      // Taken by the kernel (written / sent).
  uint64_t datagrams = 0;  // UDP.
  // UDP datagrams the kernel refused (ENOBUFS, an ICMP error from the peer
  // reported on the next send): not counted in `datagrams`.
  uint64_t send_errors = 0;
  absl::Duration duration = absl::ZeroDuration();  // First to last write.
  PerfTcpInfo tcp;
  // TCP: after the last write the stream sent FIN and the receiver closed
  // within the drain wait, so every byte written arrived.
  bool drained = false;
  std::string error;  // In words, when the stream ended early; else "".
};

struct PerfReport {
  uint64_t run_id = 0;
  std::vector<PerfStreamReport> streams;
  uint64_t bytes = 0;
  uint64_t datagrams = 0;
  // From the first stream's first write to the last stream's last.
  absl::Duration duration = absl::ZeroDuration();
};

struct WatchFilter {
  std::string server_id;      // Its events and its connections'.
  std::string connection_id;  // This connection's events only.
  // Live kinds wanted; empty: all. kEventsLost and the snapshot kinds are
  // never filtered out.
  std::vector<EngineEventKind> kinds;
  Labels selector;                // Objects whose labels match.
  size_t include_data_bytes = 0;  // Capped at kMaxWatchDataBytes.
  bool snapshot = false;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_TYPES_H_
