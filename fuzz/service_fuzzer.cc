// libFuzzer target: arbitrary bytes, parsed as a request of one of the
// SocketAgent RPCs, through the real gRPC service (an in-process channel:
// no port) against a live engine with real sockets.
//
// Input: byte 0 picks the RPC (mod the number of RPCs); the rest is that
// RPC's request message in protobuf binary (a message that does not parse
// is still sent, with whatever fields parsed). For Stream the rest is split
// at every "\xff\xfe" into several StreamRequest messages.
//
// Oracles beyond "no crash, no leak": StartServer and OpenClient never
// accept labels beyond agent/labels.h's bounds, and return accepted labels
// unchanged (seeds 00-labels-*, 03-labels-* sit at the bounds).
//
// Containment, so that fuzzing never reaches past this machine:
// - When allowed (root), the process first moves into a network namespace
//   of its own with only loopback up: nothing else exists, nothing of other
//   processes listens, and no DNS server is reachable.
// - In any case the engine runs under a policy: binds only on loopback with
//   an ephemeral port, destinations only on loopback, UNIX paths only in a
//   fresh temporary directory, and no host name lookups at all
//   (numeric_hosts_only, for the engine and the Resolve RPC's pool).
// - UNIX paths: a path starting with "$D/" is rewritten to the temporary
//   directory, so seeds reach inside it. The directory holds traps for the
//   path rules (agent/unix_path.h): "out" links to a second directory,
//   "ln.sock" to a file there, "file" is a regular file, "loop" links to
//   the directory itself. After every input the second directory must
//   still hold exactly its "precious" file: a bind or unlink that escaped
//   the policy through a symlink aborts the fuzzer.
// - Small limits (servers, connections, buffers), short deadlines on every
//   call, and the whole stack (engine, service, server) is rebuilt every
//   kResetEvery inputs so state does not pile up.
#include <fcntl.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <net/if.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"
#include "agent/labels.h"
#include "agent/policy.h"
#include "agent/resolver.h"
#include "service/agent_service.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockagent {
namespace {

namespace v1 = ::sockagent::v1;

constexpr int kResetEvery = 1000;
constexpr auto kCallTimeout = std::chrono::milliseconds(100);
constexpr size_t kMaxStreamMessages = 16;

std::string g_unix_dir;  // Our temporary directory, with a trailing '/'.
std::string g_outside;   // Reachable only through g_unix_dir's symlinks.

void MakeTraps() {
  char tmpl[] = "/tmp/sockagent-fuzz-outside-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) abort();
  g_outside = tmpl;
  FILE* precious = fopen((g_outside + "/precious").c_str(), "w");
  FILE* file = fopen((g_unix_dir + "file").c_str(), "w");
  if (precious == nullptr || file == nullptr) abort();
  fclose(precious);
  fclose(file);
  if (symlink(g_outside.c_str(), (g_unix_dir + "out").c_str()) != 0 ||
      symlink((g_outside + "/x.sock").c_str(),
              (g_unix_dir + "ln.sock").c_str()) != 0 ||
      symlink(g_unix_dir.c_str(), (g_unix_dir + "loop").c_str()) != 0) {
    abort();
  }
}

// Aborts unless g_outside holds exactly "precious".
void CheckOutsideUntouched() {
  size_t entries = 0;
  bool precious = false;
  for (const auto& e : std::filesystem::directory_iterator(g_outside)) {
    ++entries;
    precious = precious || e.path().filename() == "precious";
  }
  if (entries != 1 || !precious) {
    fprintf(stderr, "service_fuzzer: %s was changed through a symlink in %s\n",
            g_outside.c_str(), g_unix_dir.c_str());
    abort();
  }
}

void FixPath(std::string* path) {
  if (path->rfind("$D/", 0) == 0) path->replace(0, 3, g_unix_dir);
}
void Fix(v1::StartServerRequest& r) {
  FixPath(r.mutable_bind()->mutable_unix_path());
}
void Fix(v1::OpenClientRequest& r) {
  FixPath(r.mutable_remote()->mutable_unix_path());
}
template <typename Req>
void Fix(Req&) {}

// Best effort: a private network namespace with loopback up.
void IsolateNetwork() {
  if (unshare(CLONE_NEWNET) != 0) {
    fprintf(stderr,
            "service_fuzzer: no private network namespace (%s); relying on "
            "the loopback-only policy\n",
            strerror(errno));
    return;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq ifr = {};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != 0 ||
      (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)) {
    fprintf(stderr, "service_fuzzer: cannot bring loopback up: %s\n",
            strerror(errno));
    abort();
  }
  close(fd);
  fprintf(stderr,
          "service_fuzzer: running in a private network namespace (lo only)\n");
}

EngineOptions FuzzEngineOptions() {
  EngineOptions o;
  o.max_servers = 8;
  o.max_connections = 64;
  o.recv_buffer_bytes = 64 << 10;
  o.send_buffer_bytes = 64 << 10;
  o.max_total_buffered_bytes = 1 << 20;
  o.max_send_bytes = 32 << 10;
  o.max_receive_bytes = 64 << 10;
  o.max_udp_sessions_per_server = 8;
  o.closed_connections_kept = 32;
  o.default_connect_timeout = absl::Milliseconds(200);
  o.close_linger = absl::Milliseconds(50);
  o.policy.bind_ports = *ParsePortRanges("ephemeral");
  o.policy.bind_hosts = *ParseIpPrefixes("127.0.0.0/8,::1");
  o.policy.destinations = *ParseDestinationRules("127.0.0.0/8,::1/128");
  o.policy.unix_path_prefixes = std::vector<std::string>{g_unix_dir};
  o.numeric_hosts_only = true;
  return o;
}

// Engine + service + in-process gRPC server.
struct Stack {
  std::unique_ptr<ResolverPool> resolver;  // Outlives the engine.
  std::unique_ptr<Engine> engine;
  std::unique_ptr<AgentService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::SocketAgent::Stub> stub;

  Stack() {
    // One pool for the engine and the Resolve RPC, as in the daemon.
    resolver = std::make_unique<ResolverPool>(ResolverPool::Options{
        .threads = 1, .max_queued = 8, .numeric_hosts_only = true});
    absl::StatusOr<std::unique_ptr<Engine>> e =
        Engine::Create(FuzzEngineOptions(), resolver.get());
    if (!e.ok()) {
      fprintf(stderr, "engine: %s\n", e.status().ToString().c_str());
      abort();
    }
    engine = *std::move(e);
    AgentServiceOptions so;
    so.max_message_bytes = 1 << 20;
    so.watch_queue_events = 64;
    so.max_watchers = 4;
    service = std::make_unique<AgentService>(*engine, resolver.get(), so);
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    builder.SetMaxReceiveMessageSize(1 << 20);
    builder.SetMaxSendMessageSize(1 << 20);
    server = builder.BuildAndStart();
    if (server == nullptr) abort();
    stub = v1::SocketAgent::NewStub(
        server->InProcessChannel(grpc::ChannelArguments()));
  }
  ~Stack() {
    service->EndStreamingCalls();
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(2));
    engine->Shutdown();
    server->Wait();
    stub.reset();
    server.reset();
    service.reset();
    engine.reset();  // Before the pool it was given (Engine::Create).
    resolver.reset();
  }
};

Stack* g_stack = nullptr;

void SetDeadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

struct NoCheck {
  template <typename Req, typename Resp>
  void operator()(const Req&, const grpc::Status&, const Resp&) const {}
};

// The label bounds (agent/labels.h) hold: labels beyond them are never
// accepted, and accepted labels come back unchanged.
template <typename Labeled>
void CheckLabelBounds(const google::protobuf::Map<std::string, std::string>& in,
                      const grpc::Status& status, const Labeled& out) {
  const Labels labels(in.begin(), in.end());
  const bool valid = CheckLabels(labels, "labels").ok();
  if (status.ok() && !valid) {
    std::fprintf(stderr, "labels beyond the bounds were accepted\n");
    abort();
  }
  if (status.ok() &&
      Labels(out.labels().begin(), out.labels().end()) != labels) {
    std::fprintf(stderr, "accepted labels came back changed\n");
    abort();
  }
}

template <typename Req, typename Resp, typename Call, typename Check = NoCheck>
void Unary(const uint8_t* data, size_t size, Call call, Check check = {}) {
  Req request;
  (void)request.ParseFromArray(data, static_cast<int>(size));
  Fix(request);
  Resp response;
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  const grpc::Status status = call(&ctx, request, &response);
  check(request, status, response);
}

void Watch(const uint8_t* data, size_t size) {
  v1::WatchRequest request;
  (void)request.ParseFromArray(data, static_cast<int>(size));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(20));
  auto reader = g_stack->stub->Watch(&ctx, request);
  v1::Event event;
  for (int i = 0; i < 64 && reader->Read(&event); ++i) {
  }
  ctx.TryCancel();
  (void)reader->Finish();
}

void Stream(const uint8_t* data, size_t size) {
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  auto stream = g_stack->stub->Stream(&ctx);
  const absl::string_view all(reinterpret_cast<const char*>(data), size);
  size_t sent = 0;
  for (absl::string_view part : absl::StrSplit(all, "\xff\xfe")) {
    if (sent++ == kMaxStreamMessages) break;
    v1::StreamRequest request;
    (void)request.ParseFromArray(part.data(), static_cast<int>(part.size()));
    if (request.has_start() && request.start().has_open()) {
      Fix(*request.mutable_start()->mutable_open());
    }
    if (!stream->Write(request)) break;
  }
  stream->WritesDone();
  v1::StreamResponse response;
  for (int i = 0; i < 64 && stream->Read(&response); ++i) {
  }
  ctx.TryCancel();
  (void)stream->Finish();
}

void RunOne(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t which = data[0];
  ++data;
  --size;
  v1::SocketAgent::Stub* s = g_stack->stub.get();
  switch (which % 15) {
    case 0:
      return Unary<v1::StartServerRequest, v1::StartServerResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->StartServer(c, q, r); },
          [](const auto& q, const grpc::Status& st, const auto& r) {
            CheckLabelBounds(q.labels(), st, r.server());
          });
    case 1:
      return Unary<v1::StopServerRequest, v1::StopServerResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->StopServer(c, q, r); });
    case 2:
      return Unary<v1::ListServersRequest, v1::ListServersResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->ListServers(c, q, r); });
    case 3:
      return Unary<v1::OpenClientRequest, v1::OpenClientResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->OpenClient(c, q, r); },
          [](const auto& q, const grpc::Status& st, const auto& r) {
            CheckLabelBounds(q.labels(), st, r.connection());
          });
    case 4:
      return Unary<v1::ListConnectionsRequest, v1::ListConnectionsResponse>(
          data, size, [s](auto* c, auto& q, auto* r) {
            return s->ListConnections(c, q, r);
          });
    case 5:
      return Unary<v1::SendRequest, v1::SendResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->Send(c, q, r); });
    case 6:
      return Unary<v1::ReceiveRequest, v1::ReceiveResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->Receive(c, q, r); });
    case 7:
      return Unary<v1::CloseConnectionRequest, v1::CloseConnectionResponse>(
          data, size, [s](auto* c, auto& q, auto* r) {
            return s->CloseConnection(c, q, r);
          });
    case 8:
      return Watch(data, size);
    case 9:
      return Stream(data, size);
    case 10:
      return Unary<v1::ResolveRequest, v1::ResolveResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->Resolve(c, q, r); });
    case 12:
      return Unary<v1::AddFaultRequest, v1::AddFaultResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->AddFault(c, q, r); });
    case 13:
      return Unary<v1::UpdateFaultRequest, v1::UpdateFaultResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->UpdateFault(c, q, r); });
    case 14:
      return Unary<v1::RemoveFaultRequest, v1::RemoveFaultResponse>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->RemoveFault(c, q, r); });
    default:
      return Unary<v1::GetHostInfoRequest, v1::HostInfo>(
          data, size,
          [s](auto* c, auto& q, auto* r) { return s->GetHostInfo(c, q, r); });
  }
}

void Cleanup() {
  delete g_stack;
  g_stack = nullptr;
  std::error_code ec;
  std::filesystem::remove_all(g_unix_dir, ec);
  std::filesystem::remove_all(g_outside, ec);
}

}  // namespace
}  // namespace sockagent

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  using namespace sockagent;
  signal(SIGPIPE, SIG_IGN);
  // Invalid UTF-8 in string fields is expected input; protobuf would log
  // each one.
  google::protobuf::SetLogHandler(nullptr);
  IsolateNetwork();
  char tmpl[] = "/tmp/sockagent-fuzz-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) abort();
  g_unix_dir = std::string(tmpl) + "/";
  MakeTraps();
  // OpenSSL registers its own exit-time cleanup when it first initialises.
  // Left to the first TLS request (on a gRPC thread, mid-run), that comes
  // after atexit(Cleanup) and so runs before it: Cleanup then freed the
  // engine's TLS contexts into an OpenSSL already torn down, and
  // LeakSanitizer reported them. Initialised here, OpenSSL's cleanup runs
  // last.
  OPENSSL_init_ssl(0, nullptr);
  g_stack = new Stack();
  atexit(Cleanup);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int runs = 0;
  if (++runs % sockagent::kResetEvery == 0) {
    delete sockagent::g_stack;
    sockagent::g_stack = new sockagent::Stack();
  }
  sockagent::RunOne(data, size);
  sockagent::CheckOutsideUntouched();
  return 0;
}
