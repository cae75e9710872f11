// sockagentd: the agent daemon. Owns the socket engine and serves the
// sockagent.v1.SocketAgent gRPC API, plus grpc.health.v1 and reflection.
//
// Prints exactly one line to stdout once serving:
//   sockagentd serving on 127.0.0.1:7878
// (tests and scripts read the real address from it when --listen has port
// 0). Logs go to stderr, one logfmt line per event (service/log.h).
// SIGINT/SIGTERM stop it cleanly with exit 0. SIGHUP re-applies --config
// (service/config_apply.h).
//
// Access: by default it serves an owner-only UNIX socket (see
// proto/local_agent_socket.h); a TCP --listen needs a bearer token
// (--token-file) or TLS (--tls-cert/--tls-key, mutual with --tls-client-ca),
// or an explicit --insecure.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/descriptor_exhaustion.h"
#include "agent/engine.h"
#include "agent/policy.h"
#include "agent/resolver.h"
#include "proto/local_agent_socket.h"
#include "service/agent_service.h"
#include "service/auth.h"
#include "service/config_apply.h"
#include "service/control_guard.h"
#include "service/control_listener.h"
#include "service/control_tls.h"
#include "service/daemon_cli.h"
#include "service/daemon_options.h"
#include "service/fd_budget.h"
#include "service/h2_guard.h"
#include "service/inflight_calls.h"
#include "service/log.h"
#include "service/log_limiter.h"
#include "service/malloc_tuning.h"
#include "service/metrics_server.h"
#include "service/rpc_log.h"

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
namespace {

// HTTP/2 streams per control connection (GRPC_ARG_MAX_CONCURRENT_STREAMS).
// Above what legitimate clients park on one channel (tests park 1,000
// Receives and keep calling beside them; gRPC clients share one connection
// between channels to the same target), so only a flood meets it.
constexpr uint32_t kMaxControlStreams = 2048;

// The --allow-* flags; InvalidArgument naming the flag.
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

int Fail(absl::string_view message) {
  LogEvent(LogLevel::kError, "fatal", {{"msg", std::string(message)}});
  return 1;
}

int MillisFlag(absl::Duration d) {
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

// What guards the control API, decided from the flags before anything is
// started. Refuses a TCP listen without a token or TLS unless --insecure.
struct Access {
  TlsFiles tls;
  std::string token;
  std::string mode;  // For the start line: "unix-socket", "token+mtls", ...
};

absl::StatusOr<Access> AccessFromFlags(const ListenAddress& listen) {
  Access access;
  access.tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                absl::GetFlag(FLAGS_tls_client_ca)};
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    bool loose = false;
    auto token = LoadTokenFile(path, &loose);
    if (!token.ok()) return token.status();
    access.token = *std::move(token);
    if (loose) {
      LogEvent(LogLevel::kWarn, "token_file_readable",
               {{"path", path},
                {"msg",
                 "group or others may read the token file; chmod "
                 "0600 it"}});
    }
  }
  const bool tls = !access.tls.cert.empty();
  std::vector<std::string> parts;
  if (!access.token.empty()) parts.push_back("token");
  if (tls) parts.push_back(access.tls.client_ca.empty() ? "tls" : "mtls");
  if (!listen.unix_path.empty()) parts.push_back("unix-socket");
  if (parts.empty()) {
    const std::string target = listen.GrpcTarget();
    if (!absl::GetFlag(FLAGS_insecure)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to listen on ", target, " without authentication: ",
          listen.loopback
              ? "every local user could open sockets and dial out from this "
                "host through it"
              : "it is not a loopback address; anyone reaching it could open "
                "sockets and dial out from this host",
          ". Pass --token-file FILE and/or --tls-cert/--tls-key (mutual TLS: "
          "--tls-client-ca), listen on unix:/PATH (the default), or pass "
          "--insecure to do it anyway."));
    }
    LogEvent(LogLevel::kWarn, "insecure",
             {{"listen", target},
              {"msg", listen.loopback
                          ? "INSECURE: serving without authentication "
                            "(--insecure): every local user can drive this "
                            "agent"
                          : "INSECURE: serving a non-loopback address without "
                            "authentication (--insecure): ANYONE ON THE "
                            "NETWORK can open sockets and dial out from this "
                            "host"}});
    access.mode = "none";
    return access;
  }
  if (!tls && !access.token.empty() && !listen.loopback) {
    LogEvent(LogLevel::kWarn, "token_in_clear",
             {{"listen", listen.GrpcTarget()},
              {"msg",
               "the bearer token crosses the network unencrypted; add "
               "--tls-cert/--tls-key"}});
  }
  access.mode = absl::StrJoin(parts, "+");
  return access;
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

int Run(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "sockagentd [flags]: the sockagent daemon. Serves the "
      "sockagent.v1.SocketAgent gRPC API (see README.md).");
  // Debian's Abseil checks lock order on every absl::Mutex acquisition, in
  // one global graph (a debug-build aid); gRPC's locks are absl::Mutex too.
  // The daemon turns it off; the in-process engine and service tests, which
  // do not run this, keep it on as a lock-order checker.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto prepared =
      PrepareDaemonArgs(std::vector<std::string>(argv, argv + argc));
  if (!prepared.ok()) return Fail(prepared.status().message());
  if (std::optional<std::string> text = HelpOrVersionText(*prepared)) {
    fputs(text->c_str(), stdout);
    return 0;
  }
  std::vector<std::string> args = *std::move(prepared);
  std::vector<char*> arg_ptrs;
  for (auto& a : args) arg_ptrs.push_back(a.data());
  std::vector<char*> rest = absl::ParseCommandLine(
      static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  if (rest.size() > 1) {
    return Fail(absl::StrCat("unexpected argument \"", rest[1],
                             "\" (sockagentd takes flags only; see --help)"));
  }

  // Before any thread starts, so every thread shares the one arena
  // (malloc_tuning.h: relay buffers without page faults).
  TuneMallocForStreams();

  // Signals are taken by sigwait below. Blocked before anything starts a
  // thread (creating gRPC credentials starts gRPC's threads), so that every
  // thread inherits the mask and a second SIGTERM cannot kill the process
  // through a thread that left it unblocked. A peer closing a socket must not
  // kill the agent either.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);  // Reload --config (never in a handler).
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto log_level = ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!log_level.ok()) return Fail(log_level.status().message());
  SetLogLevel(*log_level);
  auto log_format = ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) return Fail(log_format.status().message());
  SetLogFormat(*log_format);
  if (absl::GetFlag(FLAGS_log_refusal_interval) <= absl::ZeroDuration()) {
    return Fail("--log_refusal_interval must be positive");
  }
  SetRefusalLogInterval(absl::GetFlag(FLAGS_log_refusal_interval));
  RouteGrpcLogs();
  const bool default_listen = absl::GetFlag(FLAGS_listen).empty();
  auto listen = ParseListenAddress(
      default_listen ? DefaultListen() : absl::GetFlag(FLAGS_listen));
  if (!listen.ok()) return Fail(listen.status().message());
  auto access = AccessFromFlags(*listen);
  if (!access.ok()) return Fail(access.status().message());
  // TLS is terminated by the daemon (control_tls.h), not by gRPC: its
  // connections then get the same cap and HTTP/2 checks as plain ones.
  std::unique_ptr<ControlTls> tls;
  if (!access->tls.cert.empty() || !access->tls.key.empty() ||
      !access->tls.client_ca.empty()) {
    auto made = ControlTls::Create(access->tls);
    if (!made.ok()) return Fail(made.status().message());
    tls = *std::move(made);
  }
  if (!listen->unix_path.empty()) {
    if (default_listen) {
      absl::Status dir = PreparePrivateDir(LocalAgentSocketDir());
      if (!dir.ok()) return Fail(dir.message());
    }
    // Held (never closed) until the process ends: a second daemon started
    // at the same moment fails here instead of binding over this one.
    auto lock = LockUnixSocketPath(listen->unix_path);
    if (!lock.ok()) return Fail(lock.status().message());
    absl::Status free = CheckUnixSocketFree(listen->unix_path);
    if (!free.ok()) return Fail(free.message());
  }
  // Read before anything binds: a bad file refuses to start at once.
  const std::string config_path = absl::GetFlag(FLAGS_config);
  std::optional<ConfigFile> config;
  if (!config_path.empty()) {
    auto loaded = LoadConfigFile(config_path);
    if (!loaded.ok()) return Fail(loaded.status().message());
    config = *std::move(loaded);
  }
  const int max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message < 64 * 1024) {
    return Fail("--max_message_bytes must be at least 65536");
  }
  auto engine_options = EngineOptionsFromFlags();
  if (!engine_options.ok()) return Fail(engine_options.status().message());
  auto metrics_options =
      MetricsOptionsFromFlags({absl::GetFlag(FLAGS_metrics_listen),
                               absl::GetFlag(FLAGS_metrics_token_file),
                               absl::GetFlag(FLAGS_metrics_tls_cert),
                               absl::GetFlag(FLAGS_metrics_tls_key)});
  if (!metrics_options.ok()) return Fail(metrics_options.status().message());
  const uint32_t max_control = absl::GetFlag(FLAGS_max_control_connections);
  if (max_control == 0) return Fail("--max_control_connections must be > 0");
  const FdBudget fds = ComputeFdBudget(RaiseNoFileLimit(), max_control,
                                       engine_options->max_servers,
                                       engine_options->max_connections);
  if (fds.lowered) {
    LogEvent(LogLevel::kWarn, "fd_budget",
             {{"rlimit_nofile", absl::StrCat(fds.limit)},
              {"control_fds", absl::StrCat(fds.control_fds)},
              {"max_connections", absl::StrCat(fds.max_connections)},
              {"msg",
               "--max_connections lowered to fit RLIMIT_NOFILE with the "
               "control plane's reserve; raise the limit (ulimit -n) or "
               "lower --max_control_connections"}});
    engine_options->max_connections = fds.max_connections;
  }
  SetDescriptorExhaustionHook(&LogDescriptorExhaustion);
  // The daemon accepts control connections itself (connection cap, frame
  // checks, TLS: control_listener.h). Bound before the engine starts, so
  // "address in use" fails fast.
  std::unique_ptr<ControlListener> control;
  {
    ControlListenerOptions control_options;
    control_options.max_connections = max_control;
    control_options.max_cancels_per_second =
        absl::GetFlag(FLAGS_max_control_cancels_per_second);
    control_options.relay.limits.max_headers_before_settings_ack =
        kMaxControlStreams;
    control_options.relay.streams.per_connection =
        absl::GetFlag(FLAGS_max_control_unauthenticated_streams);
    control_options.relay.streams.total =
        absl::GetFlag(FLAGS_max_control_unauthenticated_streams_total);
    if (control_options.relay.streams.per_connection == 0 ||
        control_options.relay.streams.total == 0) {
      return Fail(
          "--max_control_unauthenticated_streams and "
          "--max_control_unauthenticated_streams_total must be > 0");
    }
    control_options.relay.tls = tls.get();
    auto bound = ControlListener::Bind(*listen, control_options);
    if (!bound.ok()) return Fail(bound.status().message());
    control = *std::move(bound);
  }

  // One pool runs every name lookup: the Resolve RPC's and the engine's
  // (OpenClient, StartServer), so --resolver-threads/--resolver-queue bound
  // them all. Declared before the engine, which must not outlive it. At
  // exit, a lookup hanging in libc (a dead DNS server) must not hold the
  // daemon: every lookup callback holds its state by shared_ptr (see
  // ResolveReactor, StartFqdnLookup and agent/connector.h), so it may
  // finish after we are gone.
  ResolverPool resolver(
      {.threads = absl::GetFlag(FLAGS_resolver_threads),
       .max_queued = static_cast<size_t>(absl::GetFlag(FLAGS_resolver_queue)),
       .shutdown_wait = absl::Milliseconds(200),
       .numeric_hosts_only = engine_options->numeric_hosts_only});
  auto engine = Engine::Create(*engine_options, &resolver);
  if (!engine.ok()) return Fail(engine.status().message());
  AgentServiceOptions service_options;
  service_options.max_message_bytes = static_cast<uint64_t>(max_message);
  service_options.watch_queue_events = absl::GetFlag(FLAGS_watch_queue_events);
  service_options.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  service_options.bearer_token = access->token;
  for (absl::string_view dir : absl::StrSplit(
           absl::GetFlag(FLAGS_allow_tls_paths), ',', absl::SkipEmpty())) {
    char real[PATH_MAX];
    const std::string d(dir);
    if (::realpath(d.c_str(), real) == nullptr) {
      return Fail(
          absl::StrCat("--allow-tls-paths: ", d, ": ", std::strerror(errno)));
    }
    service_options.tls_path_dirs.emplace_back(real);
  }
  if (service_options.watch_queue_events < 1 ||
      service_options.watch_queue_events > sockagent::kMaxWatchQueueEvents) {
    return Fail("--watch_queue_events must be between 1 and 65536");
  }
  AgentService service(**engine, &resolver, service_options);
  // The file's servers exist before the agent says it serves. Any server
  // it cannot start is fatal here (on SIGHUP it is only logged).
  if (config.has_value()) {
    auto applied = ApplyConfig(**engine, *config);
    if (!applied.ok()) return Fail(applied.status().message());
    if (!applied->errors.empty()) {
      return Fail(absl::StrCat(config_path, ": ", applied->errors.front()));
    }
  }
  std::unique_ptr<MetricsServer> metrics;
  if (!metrics_options->listen.host.empty()) {
    metrics_options->render =
        [sources = MetricsSources{.engine = engine->get(),
                                  .resolver = &resolver,
                                  .resolver_queue_limit = static_cast<uint64_t>(
                                      absl::GetFlag(FLAGS_resolver_queue)),
                                  .max_watchers = service_options.max_watchers,
                                  .started_at = service_options.started_at,
                                  .version = SOCKAGENT_VERSION}](
            MetricsFormat format) { return RenderMetrics(sources, format); };
    auto started = MetricsServer::Start(*metrics_options);  // A copy.
    if (!started.ok()) return Fail(started.status().message());
    metrics = *std::move(started);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // No listening port of gRPC's own: every connection comes from the
  // ControlListener (grpc::AddInsecureChannelFromFd below).
  const int port = control->port();
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  // Keepalive: calls that stay open (Watch, Stream, a waiting Receive) on a
  // connection whose client vanished end within time + timeout. Clients may
  // ping every 10 s without being told off (gRPC's default is 5 min).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             MillisFlag(absl::GetFlag(FLAGS_keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      MillisFlag(absl::GetFlag(FLAGS_keepalive_timeout)));
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      MillisFlag(absl::GetFlag(FLAGS_max_connection_idle)));
  // Streams that are not reset are bounded per connection (gRPC applies it
  // once the client acknowledged the SETTINGS; the relay cuts a client
  // that opens more than this many before that: h2_guard.h).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(kMaxControlStreams));
  // (A TLS handshake that does not finish within 10 s is closed by the
  // relay: ControlRelayOptions::handshake_timeout.)
  auto interceptors = RpcLogInterceptors();
  interceptors.push_back(
      ControlGuardInterceptorFactory(control.get(), access->token));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return Fail(absl::StrCat("cannot serve on ", listen->GrpcTarget(),
                             ": gRPC did not start"));
  }
  {
    grpc::Server* s = server.get();
    control->Start([s](int fd) { grpc::AddInsecureChannelFromFd(s, fd); });
  }
  server->GetHealthCheckService()->SetServingStatus("sockagent.v1.SocketAgent",
                                                    true);
  service.StartFqdnLookup();

  const std::string shown = listen->Display(port);
  if (metrics != nullptr) {
    // Before the "serving on" line, which tells that the agent is ready.
    printf("sockagentd metrics on %s\n", metrics->Url().c_str());
    const bool guarded =
        !metrics_options->token.empty() || !metrics_options->tls_cert.empty();
    LogEvent(metrics_options->listen.loopback || guarded ? LogLevel::kInfo
                                                         : LogLevel::kWarn,
             "metrics",
             {{"url", metrics->Url()},
              {"auth", metrics_options->token.empty() ? "none" : "token"},
              {"msg", metrics_options->listen.loopback
                          ? "serving metrics on loopback"
                          : "serving metrics on a non-loopback address: "
                            "reachable from the network"}});
  }
  printf("sockagentd serving on %s\n", shown.c_str());
  fflush(stdout);
  LogEvent(LogLevel::kInfo, "start",
           {{"version", SOCKAGENT_VERSION},
            {"pid", absl::StrCat(getpid())},
            {"listen", shown},
            {"auth", access->mode}});

  LogEvent(
      LogLevel::kInfo, "policy",
      {{"rules", engine_options->policy.Describe()},
       {"name_lookups", engine_options->numeric_hosts_only ? "off" : "on"}});

  int sig = 0;
  while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
    if (config_path.empty()) {
      LogEvent(LogLevel::kInfo, "sighup",
               {{"msg", "no --config: nothing to reload"}});
      continue;
    }
    LogEvent(LogLevel::kInfo, "config_reload", {{"path", config_path}});
    auto loaded = LoadConfigFile(config_path);
    absl::Status status = loaded.status();
    if (loaded.ok()) status = ApplyConfig(**engine, *loaded).status();
    if (!status.ok()) {
      LogEvent(LogLevel::kError, "config_rejected",
               {{"path", config_path},
                {"msg", absl::StrCat(status.message(),
                                     " (the running servers are kept)")}});
    }
  }
  const absl::Time stop_start = absl::Now();
  control->Stop();
  const absl::Duration grace = absl::GetFlag(FLAGS_shutdown_grace);
  InflightCalls& calls = ProcessInflightCalls();
  LogEvent(LogLevel::kInfo, "stop",
           {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"},
            {"grace", absl::FormatDuration(grace)},
            {"in_flight", calls.Describe()}});
  server->GetHealthCheckService()->Shutdown();
  // Watch and Stream calls need not end by themselves: end them now so
  // Shutdown does not wait out its grace period.
  service.EndStreamingCalls();
  // gRPC's Shutdown(deadline) waits for the calls in flight and also for
  // every client connection to close, and an idle connection closes only
  // once its client answered the GOAWAY and PING: a long-lived client that
  // polls its idle channel rarely (Python, grpc-js, gRPC C++) held the exit
  // for the whole grace. So Shutdown runs on its own thread with the grace
  // as the bound for running calls, and as soon as no call is in flight the
  // remaining (idle) connections are cut, as Shutdown itself does at its
  // deadline.
  const absl::Time deadline = stop_start + grace;
  absl::Notification shut_down;
  std::thread shutdown_thread([&server, &shut_down, deadline] {
    server->Shutdown(absl::ToChronoTime(deadline));
    shut_down.Notify();
  });
  if (calls.AwaitIdle(deadline)) {
    if (absl::Now() - stop_start >= absl::Milliseconds(100)) {
      LogEvent(LogLevel::kInfo, "stop_waited",
               {{"for", "calls in flight"},
                {"took", absl::FormatDuration(absl::Now() - stop_start)}});
    }
    // Repeated until Shutdown returns: a cut made before Shutdown began
    // (it runs on the other thread) would not stop a client reconnecting.
    while (!shut_down.HasBeenNotified()) {
      grpc_server_cancel_all_calls(server->c_server());
      shut_down.WaitForNotificationWithTimeout(absl::Milliseconds(100));
    }
  } else {
    LogEvent(LogLevel::kWarn, "stop_grace_expired",
             {{"grace", absl::FormatDuration(grace)},
              {"cancelled", calls.Describe()}});
  }
  shutdown_thread.join();
  metrics.reset();  // Reads the engine: stops first.
  (*engine)->Shutdown();
  server->Wait();
  LogEvent(LogLevel::kInfo, "stopped",
           {{"took", absl::FormatDuration(absl::Now() - stop_start)}});
  return 0;
}

}  // namespace
}  // namespace sockagent

int main(int argc, char** argv) { return sockagent::Run(argc, argv); }
