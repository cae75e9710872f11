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
#include "service/daemon_flags.h"
#include "service/daemon_options.h"
#include "service/fd_budget.h"
#include "service/h2_guard.h"
#include "service/inflight_calls.h"
#include "service/log.h"
#include "service/log_limiter.h"
#include "service/malloc_tuning.h"
#include "service/metrics_server.h"
#include "service/rpc_log.h"

namespace sockagent {
namespace {

// HTTP/2 streams per control connection (GRPC_ARG_MAX_CONCURRENT_STREAMS).
// Above what legitimate clients park on one channel (tests park 1,000
// Receives and keep calling beside them; gRPC clients share one connection
// between channels to the same target), so only a flood meets it.
constexpr uint32_t kMaxControlStreams = 2048;

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
    // Paths are matched as spelled under a directory: allow both the
    // spelling given (absolute) and the canonical one (symlinks resolved).
    char real[PATH_MAX];
    std::string d(dir);
    if (::realpath(d.c_str(), real) == nullptr) {
      return Fail(
          absl::StrCat("--allow-tls-paths: ", d, ": ", std::strerror(errno)));
    }
    if (std::string(real) == "/") {
      return Fail(absl::StrCat("--allow-tls-paths: ", d,
                               " is the root: name the directories that hold "
                               "certificates and keys"));
    }
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    for (const std::string& spelling : {d, std::string(real)}) {
      auto& dirs = service_options.tls_path_dirs;
      if (spelling.front() == '/' &&
          std::find(dirs.begin(), dirs.end(), spelling) == dirs.end()) {
        dirs.push_back(spelling);
      }
    }
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
  //
  // The grace's end is decided here, not by Shutdown's own deadline, which
  // is set a little later: had both expired together, Shutdown could cut
  // the calls just before this thread looked, and the exit would be
  // logged as a wait instead of the cut it was. Here the calls still in
  // flight at the grace's end are logged, then cut.
  const absl::Time deadline = stop_start + grace;
  absl::Notification shut_down;
  std::thread shutdown_thread([&server, &shut_down, deadline] {
    server->Shutdown(absl::ToChronoTime(deadline + absl::Seconds(1)));
    shut_down.Notify();
  });
  if (calls.AwaitIdle(deadline)) {
    if (absl::Now() - stop_start >= absl::Milliseconds(100)) {
      LogEvent(LogLevel::kInfo, "stop_waited",
               {{"for", "calls in flight"},
                {"took", absl::FormatDuration(absl::Now() - stop_start)}});
    }
  } else {
    LogEvent(LogLevel::kWarn, "stop_grace_expired",
             {{"grace", absl::FormatDuration(grace)},
              {"cancelled", calls.Describe()}});
  }
  // Repeated until Shutdown returns: a cut made before Shutdown began (it
  // runs on the other thread) would not stop a client reconnecting.
  while (!shut_down.HasBeenNotified()) {
    grpc_server_cancel_all_calls(server->c_server());
    shut_down.WaitForNotificationWithTimeout(absl::Milliseconds(100));
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
