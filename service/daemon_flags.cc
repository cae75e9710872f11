#include "service/daemon_flags.h"

#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "agent/resolver.h"
#include "service/agent_service.h"
#include "service/control_listener.h"
#include "service/h2_guard.h"
#include "service/log_limiter.h"
#include "service/malloc_tuning.h"

// Where a flag fills a field of an option struct (EngineOptions,
// AgentServiceOptions, ResolverPool::Options, ControlListenerOptions, ...),
// its default is that field's default: each number lives in one place, and
// the README's flag table is checked against --help
// (tests/docs/readme_flags.py).

// Access control, logging and keepalive (see README "Security").
ABSL_FLAG(std::string, listen, "",
          "Control API address: HOST:PORT, [IPV6]:PORT or unix:/PATH. Port 0 "
          "picks a free port (printed on stdout). Default: the owner-only "
          "UNIX socket /run/sockagent/sockagentd.sock as root, else "
          "$XDG_RUNTIME_DIR/sockagent/sockagentd.sock (or "
          "/tmp/sockagent-UID/sockagentd.sock).");
ABSL_FLAG(bool, insecure, false,
          "Allow a TCP --listen without a token or TLS. Anyone who reaches "
          "the port (every local user on loopback) can then open sockets and "
          "dial out from this host.");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token every SocketAgent call must carry "
          "as 'authorization: Bearer <token>' (surrounding whitespace "
          "trimmed).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the agent: serve TLS (with --tls-key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificate(s): clients must present a certificate signed "
          "by one of them (mutual TLS).");
ABSL_FLAG(std::string, log_level, "info",
          "Least severe log lines written: debug, info, warn or error.");
ABSL_FLAG(std::string, log_format, "logfmt",
          "Log line format: logfmt (key=value) or json (one object per "
          "line, every value a string).");
ABSL_FLAG(absl::Duration, log_refusal_interval,
          sockagent::LogLimiterOptions{}.interval,
          "auth_failure and policy_refusal log lines: at most one per kind "
          "and peer IP per interval, each with suppressed=N (those not "
          "written since). Only the log is limited: every call is checked.");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(60),
          "Ping a client whose calls are open but silent this long.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "Close the connection when a keepalive ping is not answered within "
          "this (its calls end CANCELLED/UNAVAILABLE).");
ABSL_FLAG(absl::Duration, max_connection_idle, absl::Minutes(30),
          "Close (GOAWAY) a client connection with no call for this long.");
ABSL_FLAG(int32_t, resolver_threads, sockagent::ResolverPool::Options{}.threads,
          "Threads running name lookups.");
ABSL_FLAG(int32_t, resolver_queue,
          static_cast<int32_t>(sockagent::ResolverPool::Options{}.max_queued),
          "Lookups that may wait for a resolver thread; beyond it Resolve "
          "answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(
    int32_t, max_message_bytes,
    static_cast<int32_t>(sockagent::AgentServiceOptions{}.max_message_bytes),
    "Largest gRPC message accepted or sent.");
ABSL_FLAG(uint32_t, max_servers, sockagent::EngineOptions{}.max_servers,
          "Servers (listeners) at once; beyond it StartServer answers "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint32_t, max_connections, sockagent::EngineOptions{}.max_connections,
          "Open connections and UDP peer sessions at once; an accept beyond "
          "it is closed and counted, OpenClient answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, recv_buffer_bytes,
          sockagent::EngineOptions{}.recv_buffer_bytes,
          "Per-connection receive buffer; when full the agent stops reading "
          "the socket (TCP) or drops and counts datagrams (UDP).");
ABSL_FLAG(uint64_t, send_buffer_bytes,
          sockagent::EngineOptions{}.send_buffer_bytes,
          "Per-connection send buffer; a Send that does not fit answers "
          "RESOURCE_EXHAUSTED and queues nothing.");
ABSL_FLAG(uint64_t, max_total_buffered_bytes,
          sockagent::EngineOptions{}.max_total_buffered_bytes,
          "All connections' buffered bytes together (receive and send, "
          "including closed connections' unread bytes, which keep at most a "
          "quarter). At the cap the agent pauses TCP reading, drops and "
          "counts datagrams, and Send answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_send_bytes, sockagent::EngineOptions{}.max_send_bytes,
          "Largest payload of one Send (INVALID_ARGUMENT above).");
ABSL_FLAG(uint32_t, max_udp_sessions,
          sockagent::EngineOptions{}.max_udp_sessions_per_server,
          "UDP peer sessions per server; datagrams from further peers are "
          "dropped and counted.");
ABSL_FLAG(absl::Duration, udp_session_idle_timeout,
          sockagent::EngineOptions{}.udp_session_idle_timeout,
          "A UDP peer session with no datagram for this long expires.");
ABSL_FLAG(uint32_t, udp_reply_rate,
          sockagent::EngineOptions{}.udp_reply.datagrams_per_sec,
          "Replies per second a UDP echo or greeting server may send (a UDP "
          "source can be forged: unbounded replies make an amplifier); "
          "replies beyond it are dropped and counted (replies_dropped). "
          "0: no limit.");
ABSL_FLAG(uint64_t, udp_reply_bytes_rate,
          sockagent::EngineOptions{}.udp_reply.bytes_per_sec,
          "Reply bytes per second a UDP echo or greeting server may send. 0: "
          "no limit.");
ABSL_FLAG(uint32_t, udp_reply_peer_ratio,
          sockagent::EngineOptions{}.udp_reply.peer_ratio,
          "A UDP echo or greeting server sends a peer IP at most this many "
          "times the bytes it received from it, plus --udp-reply-peer-grant. "
          "0: no per-peer limit.");
ABSL_FLAG(uint32_t, udp_reply_peer_grant,
          sockagent::EngineOptions{}.udp_reply.peer_grant_bytes,
          "Reply bytes a UDP peer IP may get beyond --udp-reply-peer-ratio "
          "times what it sent (so a greeting answers a first empty "
          "datagram).");
ABSL_FLAG(uint32_t, closed_connections_kept,
          sockagent::EngineOptions{}.closed_connections_kept,
          "Closed connections and stopped servers kept for listing.");
ABSL_FLAG(absl::Duration, connect_timeout,
          sockagent::EngineOptions{}.default_connect_timeout,
          "Default OpenClient connect timeout.");
ABSL_FLAG(uint32_t, watch_queue_events,
          sockagent::AgentServiceOptions{}.watch_queue_events,
          "Events queued per Watch stream (1..65536); a watcher that falls "
          "behind loses further events and is told how many.");
ABSL_FLAG(uint32_t, max_watchers, sockagent::AgentServiceOptions{}.max_watchers,
          "Watch streams at once; one more is RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_watch_bytes, sockagent::EngineOptions{}.max_watch_bytes,
          "Bytes queued for all Watch streams together (events with their "
          "data and snapshots); beyond it events are dropped and counted "
          "as lost for the watcher that missed them.");
ABSL_FLAG(uint32_t, max_control_connections,
          sockagent::ControlListenerOptions{}.max_connections,
          "Control API connections at once (TCP and TLS; a TLS handshake "
          "counts from accept). At the cap a new "
          "connection closes the oldest one that has not made an "
          "authenticated call yet, or is itself closed when all have. Each "
          "costs four file descriptors (TCP: the client's socket, a "
          "socketpair to gRPC, a watch), reserved from RLIMIT_NOFILE.");
ABSL_FLAG(uint32_t, max_control_cancels_per_second,
          sockagent::ControlListenerOptions{}.max_cancels_per_second,
          "A control connection whose calls end cancelled more often than "
          "this within one second is closed (HTTP/2 rapid reset). A second "
          "line: TCP and TLS connections are first held to 50 RST_STREAM "
          "frames a second (burst 100) before gRPC sees them.");
ABSL_FLAG(uint32_t, max_control_unauthenticated_streams,
          sockagent::H2StreamBudget{}.per_connection,
          "Open HTTP/2 streams (calls: Health/Watch, reflection, anything "
          "left open) a TCP or TLS control connection may hold before one "
          "of its calls passed the token check (under mutual TLS: before its "
          "certificate verified). One more waits up to 2 s for an "
          "authenticated call, then the connection is closed.");
ABSL_FLAG(uint32_t, max_control_unauthenticated_streams_total,
          sockagent::H2StreamBudget{}.total,
          "Open HTTP/2 streams of all such connections together; past it "
          "the connection holding the most is closed.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "On SIGTERM, how long running calls may take before they are "
          "cancelled.");

// ---- Policy (agent/policy.h): on top of the limits above. Unset: allowed.
ABSL_FLAG(std::string, allow_bind_ports, "",
          "Ports StartServer may bind: ports and ranges, e.g. "
          "\"1024-65535,80\"; port 0 (pick a free port) only if the list "
          "contains 0 or \"ephemeral\". \"none\": no port. Unset: any.");
ABSL_FLAG(std::string, allow_bind_hosts, "",
          "Addresses StartServer may bind, as CIDR prefixes, e.g. "
          "\"127.0.0.0/8,::1\" (host \"\" binds 0.0.0.0 and ::, which must be "
          "allowed then). Unset: any.");
ABSL_FLAG(std::string, allow_dest, "",
          "Destinations OpenClient and Stream may dial: PREFIX, PREFIX:PORTS "
          "or [IPV6PREFIX]:PORTS, e.g. "
          "\"127.0.0.0/8,::1/128,10.0.0.0/8:443\". Checked on resolved "
          "addresses. \"none\": nowhere. Unset: anywhere.");
ABSL_FLAG(std::string, allow_unix_paths, "",
          "UNIX socket path prefixes servers may bind and clients may "
          "connect to, e.g. \"/run/sockagent/,@sockagent-\". Unset: any.");
ABSL_FLAG(std::string, allow_tls_paths, "",
          "Directories (comma-separated) under which StartServer's "
          "tls.certificate_chain_path and tls.private_key_path may name "
          "files on this host. Unset: none (send the PEM in the request).");
ABSL_FLAG(bool, no_name_lookups, false,
          "Never resolve host names (Resolve, StartServer, OpenClient): "
          "numeric addresses only, names are PERMISSION_DENIED.");
ABSL_FLAG(std::string, config, "",
          "Desired-state file (YAML, a sockagent.v1.AgentConfig: named "
          "servers to hold). Applied at start (a bad file refuses to start) "
          "and again on SIGHUP (a bad file then keeps the running state). "
          "Unset: none; SIGHUP is then logged and ignored.");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://HOST:PORT/metrics (an IP "
          "address or localhost; port 0 picks one). A non-loopback address "
          "exposes them to the network (logged as a warning). Unset: off.");
ABSL_FLAG(std::string, metrics_token_file, "",
          "File holding the bearer token /metrics requires (not the control "
          "token). Unset: none.");
ABSL_FLAG(std::string, metrics_tls_cert, "",
          "PEM certificate chain: serve /metrics over HTTPS only.");
ABSL_FLAG(std::string, metrics_tls_key, "",
          "PEM private key of --metrics-tls-cert.");

namespace sockagent {

absl::StatusOr<Policy> PolicyFromFlags() {
  Policy p;
  auto field = [](absl::string_view flag, const std::string& text, auto parse,
                  auto& out) -> absl::Status {
    if (text.empty()) return absl::OkStatus();
    auto parsed = parse(text);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": ", parsed.status().message()));
    }
    out = *std::move(parsed);
    return absl::OkStatus();
  };
  absl::Status s =
      field("allow-bind-ports", absl::GetFlag(FLAGS_allow_bind_ports),
            ParsePortRanges, p.bind_ports);
  if (s.ok()) {
    s = field("allow-bind-hosts", absl::GetFlag(FLAGS_allow_bind_hosts),
              ParseIpPrefixes, p.bind_hosts);
  }
  if (s.ok()) {
    s = field("allow-dest", absl::GetFlag(FLAGS_allow_dest),
              ParseDestinationRules, p.destinations);
  }
  if (s.ok()) {
    s = field("allow-unix-paths", absl::GetFlag(FLAGS_allow_unix_paths),
              ParseUnixPathPrefixes, p.unix_path_prefixes);
  }
  if (!s.ok()) return s;
  return p;
}

absl::StatusOr<EngineOptions> EngineOptionsFromFlags() {
  EngineOptions o;
  o.max_servers = absl::GetFlag(FLAGS_max_servers);
  o.max_connections = absl::GetFlag(FLAGS_max_connections);
  o.recv_buffer_bytes = absl::GetFlag(FLAGS_recv_buffer_bytes);
  o.send_buffer_bytes = absl::GetFlag(FLAGS_send_buffer_bytes);
  o.max_send_bytes = absl::GetFlag(FLAGS_max_send_bytes);
  o.max_total_buffered_bytes = absl::GetFlag(FLAGS_max_total_buffered_bytes);
  o.max_receive_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_message_bytes)) / 2;
  o.max_udp_sessions_per_server = absl::GetFlag(FLAGS_max_udp_sessions);
  o.udp_session_idle_timeout = absl::GetFlag(FLAGS_udp_session_idle_timeout);
  o.udp_reply.datagrams_per_sec = absl::GetFlag(FLAGS_udp_reply_rate);
  o.udp_reply.bytes_per_sec = absl::GetFlag(FLAGS_udp_reply_bytes_rate);
  o.udp_reply.peer_ratio = absl::GetFlag(FLAGS_udp_reply_peer_ratio);
  o.udp_reply.peer_grant_bytes = absl::GetFlag(FLAGS_udp_reply_peer_grant);
  o.closed_connections_kept = absl::GetFlag(FLAGS_closed_connections_kept);
  o.default_connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  absl::StatusOr<Policy> policy = PolicyFromFlags();
  if (!policy.ok()) return policy.status();
  o.policy = *std::move(policy);
  o.numeric_hosts_only = absl::GetFlag(FLAGS_no_name_lookups);
  o.max_watch_bytes = absl::GetFlag(FLAGS_max_watch_bytes);
  o.on_memory_released = [](uint64_t bytes) { NoteReleasedMemory(bytes); };
  if (o.max_watch_bytes == 0) {
    return absl::InvalidArgumentError("--max_watch_bytes must not be 0");
  }
  if (o.max_servers == 0 || o.max_connections == 0 ||
      o.recv_buffer_bytes == 0 || o.send_buffer_bytes == 0 ||
      o.max_send_bytes == 0 || o.max_udp_sessions_per_server == 0 ||
      o.max_total_buffered_bytes == 0) {
    return absl::InvalidArgumentError("limits must be greater than zero");
  }
  if (o.max_send_bytes > o.send_buffer_bytes) {
    return absl::InvalidArgumentError(
        "--max_send_bytes must not exceed --send_buffer_bytes");
  }
  if (o.max_send_bytes + 4096 >
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_message_bytes))) {
    return absl::InvalidArgumentError(
        "--max_send_bytes must be smaller than --max_message_bytes");
  }
  if (o.udp_session_idle_timeout <= absl::ZeroDuration() ||
      o.default_connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be positive");
  }
  return o;
}

}  // namespace sockagent
