// sockagentd: the agent daemon. Owns the socket engine and serves the
// sockagent.v1.SocketAgent gRPC API, plus grpc.health.v1 and reflection.
//
// Prints exactly one line to stdout once serving:
//   sockagentd serving on 127.0.0.1:7878
// (tests and scripts read the real address from it when --listen has port
// 0). Logs go to stderr. SIGINT/SIGTERM stop it cleanly with exit 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/resolver.h"
#include "service/agent_service.h"
#include "service/daemon_options.h"

ABSL_FLAG(std::string, listen, std::string(sockagent::kDefaultListen),
          "Control API address: HOST:PORT, [IPV6]:PORT or unix:/PATH. Port 0 "
          "picks a free port (printed on stdout).");
ABSL_FLAG(bool, insecure, false,
          "Allow --listen on a non-loopback address without authentication. "
          "Anyone who reaches the port can then open sockets on this host.");
ABSL_FLAG(int32_t, resolver_threads, 4, "Threads running name lookups.");
ABSL_FLAG(int32_t, resolver_queue, 256,
          "Lookups that may wait for a resolver thread; beyond it Resolve "
          "answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_message_bytes, 4 << 20,
          "Largest gRPC message accepted or sent.");
ABSL_FLAG(uint32_t, max_servers, 1024,
          "Servers (listeners) at once; beyond it StartServer answers "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint32_t, max_connections, 16384,
          "Open connections and UDP peer sessions at once; an accept beyond "
          "it is closed and counted, OpenClient answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, recv_buffer_bytes, 4 << 20,
          "Per-connection receive buffer; when full the agent stops reading "
          "the socket (TCP) or drops and counts datagrams (UDP).");
ABSL_FLAG(uint64_t, send_buffer_bytes, 4 << 20,
          "Per-connection send buffer; a Send that does not fit answers "
          "RESOURCE_EXHAUSTED and queues nothing.");
ABSL_FLAG(uint64_t, max_total_buffered_bytes, uint64_t{1} << 30,
          "All connections' buffered bytes together (receive and send, "
          "including closed connections' unread bytes, which keep at most a "
          "quarter). At the cap the agent pauses TCP reading, drops and "
          "counts datagrams, and Send answers RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_send_bytes, 1 << 20,
          "Largest payload of one Send (INVALID_ARGUMENT above).");
ABSL_FLAG(uint32_t, max_udp_sessions, 1024,
          "UDP peer sessions per server; datagrams from further peers are "
          "dropped and counted.");
ABSL_FLAG(absl::Duration, udp_session_idle_timeout, absl::Seconds(60),
          "A UDP peer session with no datagram for this long expires.");
ABSL_FLAG(uint32_t, closed_connections_kept, 1000,
          "Closed connections and stopped servers kept for listing.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(10),
          "Default OpenClient connect timeout.");
ABSL_FLAG(uint32_t, watch_queue_events, 1024,
          "Events queued per Watch stream (1..65536); a watcher that falls "
          "behind loses further events and is told how many.");
ABSL_FLAG(uint32_t, max_watchers, 64,
          "Watch streams at once; one more is RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "On SIGTERM, how long running calls may take before they are "
          "cancelled.");

namespace sockagent {
namespace {

void Log(absl::string_view level, absl::string_view message) {
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " ", level, " sockagentd: ", message, "\n");
  fputs(line.c_str(), stderr);
}

int Fail(absl::string_view message) {
  Log("error", message);
  return 1;
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
  o.closed_connections_kept = absl::GetFlag(FLAGS_closed_connections_kept);
  o.default_connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
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
  std::vector<std::string> args = NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& a : args) arg_ptrs.push_back(a.data());
  std::vector<char*> rest = absl::ParseCommandLine(
      static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  if (rest.size() > 1) {
    return Fail(absl::StrCat("unexpected argument \"", rest[1],
                             "\" (sockagentd takes flags only; see --help)"));
  }

  auto listen = ParseListenAddress(absl::GetFlag(FLAGS_listen));
  if (!listen.ok()) return Fail(listen.status().message());
  if (!listen->loopback) {
    if (!absl::GetFlag(FLAGS_insecure)) {
      return Fail(absl::StrCat(
          "refusing to listen on ", listen->GrpcTarget(),
          ": it is not a loopback address and no authentication is "
          "configured; anyone reaching it could open sockets on this host. "
          "Pass --insecure to do it anyway."));
    }
    Log("warning", absl::StrCat("INSECURE: serving ", listen->GrpcTarget(),
                                " without authentication (--insecure)"));
  }
  const int max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message < 64 * 1024) {
    return Fail("--max_message_bytes must be at least 65536");
  }
  auto engine_options = EngineOptionsFromFlags();
  if (!engine_options.ok()) return Fail(engine_options.status().message());

  // Signals are taken by sigwait below; every thread started from here on
  // inherits the mask. A peer closing a socket must not kill the agent.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto engine = Engine::Create(*engine_options);
  if (!engine.ok()) return Fail(engine.status().message());
  // At exit, a lookup hanging in libc (a dead DNS server) must not hold the
  // daemon: every lookup callback holds its state by shared_ptr (see
  // ResolveReactor and StartFqdnLookup), so it may finish after we are gone.
  ResolverPool resolver(
      {.threads = absl::GetFlag(FLAGS_resolver_threads),
       .max_queued = static_cast<size_t>(absl::GetFlag(FLAGS_resolver_queue)),
       .shutdown_wait = absl::Milliseconds(200)});
  AgentServiceOptions service_options;
  service_options.max_message_bytes = static_cast<uint64_t>(max_message);
  service_options.watch_queue_events = absl::GetFlag(FLAGS_watch_queue_events);
  service_options.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  if (service_options.watch_queue_events < 1 ||
      service_options.watch_queue_events > sockagent::kMaxWatchQueueEvents) {
    return Fail("--watch_queue_events must be between 1 and 65536");
  }
  AgentService service(engine->get(), &resolver, service_options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen->GrpcTarget(),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || (listen->unix_path.empty() && port == 0)) {
    return Fail(absl::StrCat("cannot listen on ", listen->GrpcTarget(),
                             ": address in use, not local, or not "
                             "permitted"));
  }
  server->GetHealthCheckService()->SetServingStatus("sockagent.v1.SocketAgent",
                                                    true);
  service.StartFqdnLookup();

  const std::string shown = listen->Display(port);
  printf("sockagentd serving on %s\n", shown.c_str());
  fflush(stdout);
  Log("info", absl::StrCat("version ", SOCKAGENT_VERSION, " serving on ", shown,
                           " (pid ", getpid(), ")"));

  int sig = 0;
  sigwait(&stop_signals, &sig);
  Log("info", absl::StrCat("received ", sig == SIGINT ? "SIGINT" : "SIGTERM",
                           ", shutting down"));
  server->GetHealthCheckService()->Shutdown();
  // Watch and Stream calls need not end by themselves: end them now so
  // Shutdown does not wait out its grace period.
  service.EndStreamingCalls();
  server->Shutdown(
      absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_shutdown_grace)));
  (*engine)->Shutdown();
  server->Wait();
  Log("info", "stopped");
  return 0;
}

}  // namespace
}  // namespace sockagent

int main(int argc, char** argv) { return sockagent::Run(argc, argv); }
