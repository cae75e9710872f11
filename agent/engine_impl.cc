// EngineImpl, the coordinator: creation, the loop thread, posting,
// shutdown, the public control calls, Send and Close, and the glue between
// the components (Registry, BufferBudget, WatchHub, Connector, Receiver,
// Streams, TlsStage, FaultStage, UdpIo, Servers, each in its own header).
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
      budget_(options.max_total_buffered_bytes,
              BufferBudget::Hooks{
                  .post_resume =
                      [this] {
                        asio::post(io_, Locked([this] {
                                     AssertEngineLock();
                                     budget_.ResumePaused();
                                   }));
                      },
                  // The budget calls these under the engine lock.
                  .resume =
                      [this](uint64_t num) {
                        AssertEngineLock();
                        ResumeTotalPaused(num);
                      },
                  .history_full =
                      [this] {
                        AssertEngineLock();
                        ScheduleTrim();
                      },
              }),
      connector_(*this, resolver),
      prober_(std::make_unique<Prober>(
          io_,
          ProberOptions{.policy = &options_.policy, .resolver = &resolver})) {}

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
             DoOpenClient(std::move(spec), deadline, std::move(d));
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
             DoSend(id, std::move(data), std::move(d));
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

void EngineImpl::CloseConnections(Selector selector, CloseMode mode,
                                  Done<absl::StatusOr<CloseResult>> done) {
  PostWork(std::move(done), [this, selector = std::move(selector),
                             mode](Done<absl::StatusOr<CloseResult>> d) {
    AssertEngineLock();
    DoCloseConnections(selector, mode, std::move(d));
  });
}

void EngineImpl::ShutdownOnLoop() {
  shutting_down_ = true;
  prober_->Shutdown();
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

void EngineImpl::FileInHistory(Conn& c) {
  budget_.MoveToHistory(c.charged);
  registry_.ConnFinalized(c.num);
  ScheduleTrim();
}

uint64_t RecvCharge(const Conn& c) {
  uint64_t n = c.counters.recv_buffered;
  if (c.extra != nullptr) {
    n += kDatagramOverheadBytes * c.extra->recv_datagrams.size();
  }
  return n;
}

uint64_t SendCharge(const Conn& c) {
  uint64_t n = c.counters.send_buffered;
  if (c.extra != nullptr) {
    n += kDatagramOverheadBytes *
         (c.extra->send_datagrams.size() + c.extra->out_datagrams);
  }
  return n;
}

void EngineImpl::Recharge(Conn& c) {
  const uint64_t now = RecvCharge(c) + SendCharge(c);
  if (now == c.charged) return;
  const uint64_t was = c.charged;
  c.charged = now;
  budget_.Recharge(was, now, c.finalized);
  counters_.buffered_bytes.store(budget_.total(), std::memory_order_relaxed);
  // Buffers of a closed connection going away (discarded, or its history
  // trimmed) are memory to hand back; a live one's Receive is not.
  if (now < was && c.state == ConnectionState::kClosed) {
    NoteReleased(was - now);
  }
}

void EngineImpl::ResumeTotalPaused(uint64_t num) {
  Conn* c = registry_.FindConn(num);
  if (c == nullptr || !c->reading.total_paused) return;
  c->reading.total_paused = false;
  // Resumes unless its own buffer is still above half its bound; a
  // connection that finds the total full again pauses again.
  conn_io_.ResumeReading(*c);
}

void EngineImpl::DiscardHistoryBytes(Conn& c) {
  const uint64_t bytes = c.counters.recv_buffered;
  const size_t datagrams =
      c.extra != nullptr ? c.extra->recv_datagrams.size() : 0;
  if (bytes == 0 && datagrams == 0) return;
  c.recv_bytes.Clear();
  ConnExtra& x = c.Extra();
  x.recv_datagrams.clear();
  c.counters.recv_buffered = 0;
  x.history_discarded += bytes;
  const std::string detail = absl::StrCat(
      bytes, " unreceived bytes discarded (closed connections keep at most ",
      options_.max_total_buffered_bytes / 4, " bytes in all)");
  x.close_detail = x.close_detail.empty()
                       ? detail
                       : absl::StrCat(x.close_detail, "; ", detail);
  Recharge(c);
}

void EngineImpl::DoSend(absl::string_view id, std::string data,
                        Done<absl::StatusOr<SendResult>> done) {
  absl::StatusOr<Conn*> c = registry_.LookupConn(id);
  if (!c.ok()) {
    done(c.status());
    return;
  }
  if ((*c)->behavior == BehaviorKind::kProxy) {
    done(ProxiedRefusal(**c, "send"));
    return;
  }
  done(conn_io_.QueueSend(**c, std::move(data)));
}

void EngineImpl::DoCloseConnections(const Selector& selector, CloseMode mode,
                                    Done<absl::StatusOr<CloseResult>> done) {
  if (absl::Status s = CheckSelector(selector); !s.ok()) {
    done(s);
    return;
  }
  std::vector<Conn*> targets;
  if (!selector.id.empty()) {
    absl::StatusOr<Conn*> c = registry_.LookupConn(selector.id);
    if (!c.ok()) {
      done(c.status());
      return;
    }
    targets.push_back(*c);
  } else {
    for (auto& [num, c] : registry_.conns()) {
      if (c->state != ConnectionState::kClosed &&
          LabelsMatch(c->labels, selector.labels)) {
        targets.push_back(c.get());
      }
    }
  }
  if (mode == CloseMode::kShutdownWrite) {
    // All or nothing: UDP has no half-close to shut down.
    for (const Conn* c : targets) {
      if (c->transport == Transport::kUdp) {
        done(absl::InvalidArgumentError(absl::StrCat(
            "close ", ConnId(c->num),
            ": shutdown-write is for stream sockets (TCP, UNIX); UDP has "
            "no half-close")));
        return;
      }
      if (c->behavior == BehaviorKind::kProxy) {
        done(ProxiedRefusal(*c, "shutdown-write"));
        return;
      }
    }
  }
  // Trimming of the history is posted, so these pointers stay valid.
  for (Conn* c : targets) {
    switch (mode) {
      case CloseMode::kGraceful:
        closer_.StartClose(*c, CloseReason::kLocalClose, "", /*abort=*/false);
        break;
      case CloseMode::kAbort:
        closer_.StartClose(*c, CloseReason::kLocalAbort, "", /*abort=*/true);
        break;
      case CloseMode::kShutdownWrite:
        conn_io_.ShutdownWrite(*c);
        break;
    }
  }
  CloseResult out;
  out.count = targets.size();
  const size_t listed = std::min(targets.size(), kMaxListedResults);
  out.connections.reserve(listed);
  for (size_t i = 0; i < listed; ++i) {
    out.connections.push_back(Snapshot(*targets[i]));
  }
  done(std::move(out));
}

void EngineImpl::ScheduleTrim() {
  if (trim_posted_) return;
  trim_posted_ = true;
  asio::post(io_, Locked([this] {
               AssertEngineLock();
               TrimHistory();
             }));
}

void EngineImpl::TrimHistory() {
  trim_posted_ = false;
  registry_.TrimClosed(options_.closed_connections_kept, [this](Conn& c) {
    AssertEngineLock();
    budget_.Forget(c.charged);
    counters_.buffered_bytes.store(budget_.total(), std::memory_order_relaxed);
    uint64_t freed = sizeof(Conn) + sizeof(ConnExtra) + c.charged;
    if (c.labels != nullptr && c.labels.use_count() == 1) {
      freed += LabelsBytes(*c.labels);
    }
    NoteReleased(freed);
  });
  // The bytes nobody received yet: oldest records give theirs up first.
  registry_.VisitClosed([this](Conn& c) {
    AssertEngineLock();
    if (budget_.history() <= budget_.history_cap()) return false;
    DiscardHistoryBytes(c);
    return true;
  });
  registry_.TrimStopped(options_.closed_connections_kept);
}

}  // namespace engine_internal
}  // namespace sockagent