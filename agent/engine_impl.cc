// EngineImpl, the coordinator: creation, the loop thread, posting,
// shutdown, and the public control calls, each handed to its component
// (Registry, Ledger, WatchHub, Connector, Receiver, Streams, TlsStage,
// FaultStage, UdpIo, Servers, ConnIo, Closer, each in its own header).
// Events live in engine_watch.cc, the public Stream and fault calls in
// engine_stream.cc and engine_faults.cc.
#include "agent/engine_impl.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "agent/quote.h"

namespace sockagent {

namespace {

absl::Status ValidateOptions(const EngineOptions& o) {
  auto positive = [](absl::string_view name, uint64_t value) {
    return value > 0 ? absl::OkStatus()
                     : absl::InvalidArgumentError(
                           absl::StrCat("engine option ", name, " is 0"));
  };
  for (const auto& [name, value] :
       {std::pair<absl::string_view, uint64_t>{"max_servers", o.max_servers},
        {"max_connections", o.max_connections},
        {"recv_buffer_bytes", o.recv_buffer_bytes},
        {"send_buffer_bytes", o.send_buffer_bytes},
        {"max_send_bytes", o.max_send_bytes},
        {"max_receive_bytes", o.max_receive_bytes},
        {"max_total_buffered_bytes", o.max_total_buffered_bytes},
        {"max_watch_bytes", o.max_watch_bytes},
        {"max_udp_sessions_per_server", o.max_udp_sessions_per_server}}) {
    if (absl::Status s = positive(name, value); !s.ok()) return s;
  }
  if (o.max_send_bytes > o.send_buffer_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine option max_send_bytes (", o.max_send_bytes,
                     ") is above send_buffer_bytes (", o.send_buffer_bytes,
                     "): such a Send could never fit"));
  }
  if (o.udp_session_idle_timeout <= absl::ZeroDuration() ||
      o.default_connect_timeout <= absl::ZeroDuration() ||
      o.close_linger < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "engine options udp_session_idle_timeout and default_connect_timeout "
        "must be positive, close_linger not negative");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(
    const EngineOptions& options, ResolverPool* resolver) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (resolver == nullptr) {
    return absl::InvalidArgumentError("the engine needs a resolver pool");
  }
  if (options.numeric_hosts_only && !resolver->numeric_hosts_only()) {
    return absl::InvalidArgumentError(
        "engine option numeric_hosts_only needs a resolver pool that never "
        "looks host names up (ResolverPool::Options::numeric_hosts_only)");
  }
  auto engine =
      std::make_unique<engine_internal::EngineImpl>(options, *resolver);
  engine->Start();
  return engine;
}

namespace engine_internal {
namespace {

// One read takes at most this much; 256 KiB read best on this hardware
// (BENCHMARKS.md, Profiles: TCP discard). One buffer for the whole loop.
constexpr size_t kScratchBytes = 256 * 1024;

}  // namespace

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status ShuttingDownError() {
  return absl::UnavailableError("agent shutting down");
}

const char* CloseReasonText(CloseReason reason) {
  switch (reason) {
    case CloseReason::kNone:
      return "open";
    case CloseReason::kLocalClose:
      return "closed locally";
    case CloseReason::kLocalAbort:
      return "aborted locally";
    case CloseReason::kPeerClosed:
      return "closed by peer";
    case CloseReason::kPeerReset:
      return "reset by peer";
    case CloseReason::kIdleTimeout:
      return "idle timeout";
    case CloseReason::kTtlExpired:
      return "ttl expired";
    case CloseReason::kServerStopped:
      return "server stopped";
    case CloseReason::kStreamEnded:
      return "stream ended";
    case CloseReason::kError:
      return "error";
    case CloseReason::kAgentShutdown:
      return "agent shutdown";
  }
  return "unknown";
}

std::chrono::steady_clock::duration ToSteady(absl::Duration d) {
  // Far enough for any timer, and no overflow when added to now().
  constexpr absl::Duration kMax = absl::Hours(24 * 365 * 100);
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(std::clamp(d, absl::ZeroDuration(), kMax)));
}

thread_local EngineImpl* EngineImpl::holder_ = nullptr;

EngineImpl::EngineImpl(const EngineOptions& options, ResolverPool& resolver)
    : io_(1),
      options_(options),
      watch_(options.max_watch_bytes, &counters_.events_lost),
      scratch_(kScratchBytes),
      connector_(*this, resolver),
      prober_(std::make_unique<Prober>(
          io_,
          ProberOptions{.policy = &options_.policy, .resolver = &resolver})),
      perf_(std::make_unique<PerfRunner>(
          io_,
          PerfOptions{.policy = &options_.policy, .resolver = &resolver})) {}

EngineImpl::~EngineImpl() {
  // Joins the loop; then the members go, the Connector among them: lookups
  // still running in libc end on the caller's pool, their results dropped.
  Shutdown();
}

void EngineImpl::Start() {
  absl::MutexLock lock(&join_mu_);
  work_.emplace(asio::make_work_guard(io_));
  thread_ = std::thread([this] { io_.run(); });
  loop_thread_id_.store(thread_.get_id());
}

void EngineImpl::Shutdown() {
  // Before any lock: another thread's Shutdown holds join_mu_ while it
  // joins this loop, so the loop taking it would deadlock instead of
  // failing loudly.
  if (loop_thread_id_.load() == std::this_thread::get_id() ||
      HeldByThisThread()) {
    std::fprintf(stderr,
                 "sockagent: Engine::Shutdown called under the engine lock\n");
    std::abort();
  }
  {
    absl::MutexLock lock(&post_mu_);
    if (accepting_) {
      accepting_ = false;
      asio::post(io_, Locked([this] {
                   AssertEngineLock();
                   ShutdownOnLoop();
                 }));
    }
  }
  absl::MutexLock lock(&join_mu_);
  if (!thread_.joinable()) return;
  work_.reset();
  thread_.join();
  // The id may be reused by a later thread.
  loop_thread_id_.store(std::thread::id());
}

void EngineImpl::StartServer(ServerSpec spec,
                             Done<absl::StatusOr<ServerInfo>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec)](
                                Done<absl::StatusOr<ServerInfo>> d) mutable {
    AssertEngineLock();
    if (absl::Status s = CheckLabels(spec.labels, "labels"); !s.ok()) {
      d(s);
      return;
    }
    servers_.Start(std::move(spec), std::move(d));
  });
}

void EngineImpl::StopServers(Selector selector, bool close_connections,
                             Done<absl::StatusOr<StopResult>> done) {
  PostWork(std::move(done),
           [this, selector = std::move(selector),
            close_connections](Done<absl::StatusOr<StopResult>> d) {
             AssertEngineLock();
             servers_.StopMatching(selector, close_connections, std::move(d));
           });
}

void EngineImpl::ListServers(ServerFilter filter,
                             Done<absl::StatusOr<Page<ServerInfo>>> done) {
  PostWork(std::move(done), [this, filter = std::move(filter)](
                                Done<absl::StatusOr<Page<ServerInfo>>> d) {
    AssertEngineLock();
    d(registry_.ListServers(filter));
  });
}

void EngineImpl::OpenClient(ClientSpec spec, absl::Time deadline,
                            Done<absl::StatusOr<ConnectionInfo>> done) {
  PostWork(std::move(done),
           [this, spec = std::move(spec),
            deadline](Done<absl::StatusOr<ConnectionInfo>> d) mutable {
             connector_.Open(std::move(spec), deadline, std::move(d));
           });
}

void EngineImpl::ListConnections(
    ConnectionFilter filter, Done<absl::StatusOr<Page<ConnectionInfo>>> done) {
  PostWork(std::move(done), [this, filter = std::move(filter)](
                                Done<absl::StatusOr<Page<ConnectionInfo>>> d) {
    AssertEngineLock();
    d(registry_.ListConnections(filter));
  });
}

void EngineImpl::Send(std::string connection_id, std::string data,
                      Done<absl::StatusOr<SendResult>> done) {
  PostWork(std::move(done),
           [this, id = std::move(connection_id), data = std::move(data)](
               Done<absl::StatusOr<SendResult>> d) mutable {
             AssertEngineLock();
             conn_io_.Send(id, std::move(data), std::move(d));
           });
}

uint64_t EngineImpl::Receive(std::string connection_id, ReceiveSpec spec,
                             Done<absl::StatusOr<ReceiveResult>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  PostWork(std::move(done), [this, id = std::move(connection_id), spec,
                             token](Done<absl::StatusOr<ReceiveResult>> d) {
    AssertEngineLock();
    receiver_.Receive(id, spec, token, std::move(d));
  });
  return token;
}

void EngineImpl::CancelReceive(uint64_t token) {
  // Once Shutdown began it completes every parked receive itself.
  RunOrPost([this, token] {
    AssertEngineLock();
    receiver_.Cancel(token);
  });
}

uint64_t EngineImpl::Probe(ProbeSpec spec,
                           Done<absl::StatusOr<ProbeReport>> done) {
  {
    absl::MutexLock lock(&post_mu_);
    if (!accepting_) {
      done(ShuttingDownError());
      return 0;
    }
  }
  return prober_->Start(std::move(spec), std::move(done));
}

void EngineImpl::CancelProbe(uint64_t token) { prober_->Cancel(token); }

uint64_t EngineImpl::Perf(PerfSpec spec,
                          Done<absl::StatusOr<PerfReport>> done) {
  {
    absl::MutexLock lock(&post_mu_);
    if (!accepting_) {
      done(ShuttingDownError());
      return 0;
    }
  }
  return perf_->Start(std::move(spec), std::move(done));
}

void EngineImpl::CancelPerf(uint64_t token) { perf_->Cancel(token); }

void EngineImpl::CloseConnections(Selector selector, CloseMode mode,
                                  Done<absl::StatusOr<CloseResult>> done) {
  PostWork(std::move(done), [this, selector = std::move(selector),
                             mode](Done<absl::StatusOr<CloseResult>> d) {
    AssertEngineLock();
    closer_.CloseSelected(selector, mode, std::move(d));
  });
}

void EngineImpl::ShutdownOnLoop() {
  shutting_down_ = true;
  prober_->Shutdown();
  perf_->Shutdown();
  // OpenClient calls in flight and StartServer calls waiting for a name
  // lookup.
  connector_.Shutdown();
  for (auto& [num, conn] : registry_.conns()) {
    if (conn->finalized) continue;
    closer_.MarkClosed(*conn, CloseReason::kAgentShutdown,
                       "agent shutting down");
    // Bytes accepted by Send but never written: a reset tells the peer its
    // stream is incomplete, where a FIN would look like a clean end.
    closer_.Finalize(*conn, /*abort=*/conn->counters.send_buffered > 0);
  }
  for (auto& [num, server] : registry_.servers()) {
    if (!server->stopped()) {
      servers_.Stop(*server, "agent shutdown", CloseReason::kAgentShutdown,
                    nullptr);
    }
  }
}

}  // namespace engine_internal
}  // namespace sockagent