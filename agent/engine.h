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
  // TLS connections: what the handshake saw (its failure, if it failed).
  // Null: no TLS, or the handshake has not ended yet.
  std::shared_ptr<const TlsInfo> tls;
  bool tls_handshaking = false;  // A TLS handshake is in progress.
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
};

struct ProbeSpec {
  std::vector<ProbeTarget> targets;
  absl::Duration timeout = absl::Seconds(2);     // Per probe; 0: 2 s.
  size_t concurrency = 0;                        // In flight; 0: 64.
  absl::Time deadline = absl::InfiniteFuture();  // The whole call.
};

enum class ProbeClass { kOk, kRefused, kTimeout, kUnreachable, kDns, kError };

// "OK", "REFUSED", ...
const char* ProbeClassName(ProbeClass c);

struct ProbeOutcome {
  ProbeClass result = ProbeClass::kError;
  std::string remote;  // The address dialled: "127.0.0.1:80", "unix:/p".
  absl::Duration connect_time = absl::ZeroDuration();  // TCP/UNIX.
  // From the first payload byte written to the last echo byte read.
  absl::Duration round_trip = absl::ZeroDuration();
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  std::string error;  // In words; "" for OK.
};

struct ProbeReport {
  std::vector<ProbeOutcome> outcomes;  // In the order of spec.targets.
  absl::Duration took = absl::ZeroDuration();
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
