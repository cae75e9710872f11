// EngineImpl: the socket engine behind engine.h. Internal header, included
// only by the engine_*.cc files (it pulls in Asio).
//
// Threads: one engine lock (engine_mu_) guards every object below. The loop
// thread takes it around each completion handler (Locked); a public Engine
// method takes it on the caller's thread and does its work there, inline
// (PostWork), so a control call costs no hop to the loop and back: a Send
// writes to the socket and answers `done` before it returns. A call made
// while the lock is already held by this thread (from inside a `done` or a
// handler) is posted to the loop instead, so nothing re-enters the engine.
// The loop thread is the only one that waits in epoll and runs handlers;
// Asio lets any thread start an async operation. Shutdown() posts and joins.
//
// EngineImpl is the coordinator over components, each with its own header
// saying what it owns and which lock guards it:
//   registry_  (registry.h)       ids, the servers and connections below,
//                                 their history, listings, trimming;
//   ledger_    (ledger.h)         what each connection is charged against
//                                 the BufferBudget (buffer_budget.h: the
//                                 agent-wide bound and its watermarks), and
//                                 the closed history's bounds;
//   watch_     (watch_hub.h)      watchers and their bounded event queues
//                                 (its own lock, taken after the engine's);
//   servers_   (servers.h)        listeners, accept, stopping servers;
//   connector_ (connector.h)      OpenClient attempts and name lookups;
//   conn_io_   (conn_io.h)        reading and writing stream connections;
//   udp_       (udp_io.h)         datagram sockets and peer sessions;
//   closer_    (closer.h)         graceful closes, aborts, Finalize;
//   receiver_  (receiver.h)       the Receive path, parked Receives;
//   streams_   (streams.h)        Stream attachments;
//   tls_       (tls_stage.h)      TLS handshakes and the session cache;
//   faults_    (fault_stage.h)    the fault table and its effects;
//   proxy_     (proxy.h)          proxy relays between two connections.
// Each holds `EngineImpl&` (a friend) and asserts the engine lock on entry.
//
// The objects it works on (Conn, Server, ...) and their life cycles are
// described in engine_objects.h.
#ifndef SOCKAGENT_AGENT_ENGINE_IMPL_H_
#define SOCKAGENT_AGENT_ENGINE_IMPL_H_

#include <asio.hpp>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/address.h"
#include "agent/buffer_budget.h"
#include "agent/byte_queue.h"
#include "agent/closer.h"
#include "agent/conn_io.h"
#include "agent/connector.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"
#include "agent/engine_sockets.h"
#include "agent/fault_stage.h"
#include "agent/fifo.h"
#include "agent/ledger.h"
#include "agent/perf.h"
#include "agent/prober.h"
#include "agent/proxy.h"
#include "agent/receiver.h"
#include "agent/registry.h"
#include "agent/resolver.h"
#include "agent/servers.h"
#include "agent/streams.h"
#include "agent/tls_stage.h"
#include "agent/udp_io.h"
#include "agent/unix_path.h"
#include "agent/watch_hub.h"

namespace sockagent {
namespace engine_internal {

using EventKind = EngineEventKind;

class EngineImpl final : public Engine {
 public:
  // `resolver` runs the engine's name lookups and outlives it.
  EngineImpl(const EngineOptions& options, ResolverPool& resolver);
  ~EngineImpl() override;

  // Starts the loop thread. Called once, by Engine::Create.
  void Start();

  const EngineOptions& options() const override { return options_; }
  const EngineCounters& counters() const override { return counters_; }
  void StartServer(ServerSpec spec,
                   Done<absl::StatusOr<ServerInfo>> done) override;
  void StopServers(Selector selector, bool close_connections,
                   Done<absl::StatusOr<StopResult>> done) override;
  void ListServers(ServerFilter filter,
                   Done<absl::StatusOr<Page<ServerInfo>>> done) override;
  void OpenClient(ClientSpec spec, absl::Time deadline,
                  Done<absl::StatusOr<ConnectionInfo>> done) override;
  void ListConnections(
      ConnectionFilter filter,
      Done<absl::StatusOr<Page<ConnectionInfo>>> done) override;
  void Send(std::string connection_id, std::string data,
            Done<absl::StatusOr<SendResult>> done) override;
  uint64_t Receive(std::string connection_id, ReceiveSpec spec,
                   Done<absl::StatusOr<ReceiveResult>> done) override;
  void CancelReceive(uint64_t token) override;
  void CloseConnections(Selector selector, CloseMode mode,
                        Done<absl::StatusOr<CloseResult>> done) override;
  void CheckWatchFilter(const WatchFilter& filter,
                        Done<absl::Status> done) override;
  absl::StatusOr<uint64_t> Subscribe(WatchFilter filter, size_t queue_limit,
                                     std::function<void()> wake) override;
  std::vector<EngineEvent> Drain(uint64_t watcher, size_t max) override;
  void Unsubscribe(uint64_t watcher) override;
  size_t QueuedEvents(uint64_t watcher) override;
  uint64_t Probe(ProbeSpec spec,
                 Done<absl::StatusOr<ProbeReport>> done) override;
  void CancelProbe(uint64_t token) override;
  uint64_t Perf(PerfSpec spec, Done<absl::StatusOr<PerfReport>> done) override;
  void CancelPerf(uint64_t token) override;
  void AddFault(FaultSpec spec, Done<absl::StatusOr<FaultInfo>> done) override;
  void UpdateFault(FaultSpec spec,
                   Done<absl::StatusOr<FaultInfo>> done) override;
  void RemoveFaults(
      std::string name, Labels selector, bool all,
      Done<absl::StatusOr<std::vector<std::string>>> done) override;
  void ListFaults(Done<absl::StatusOr<std::vector<FaultInfo>>> done) override;
  void AttachStream(std::string connection_id, bool close_on_detach,
                    Done<absl::StatusOr<StreamAttachment>> done) override;
  void OpenStream(ClientSpec spec, absl::Time deadline,
                  Done<absl::StatusOr<StreamAttachment>> done) override;
  uint64_t StreamReceive(uint64_t attachment, size_t max_bytes,
                         Done<absl::StatusOr<StreamChunk>> done) override;
  void StreamSend(uint64_t attachment, std::string data,
                  Done<absl::Status> done) override;
  void StreamShutdownWrite(uint64_t attachment,
                           Done<absl::Status> done) override;
  void DetachStream(uint64_t attachment) override;
  void Shutdown() override;

 private:
  // ---- engine_impl.cc: posting, registry, lists, Send/Receive/Close API.
  // Runs fn(done) under the engine lock: inline on the caller's thread, or
  // posted to the loop when this thread holds the lock already. Once the
  // engine stopped accepting work, answers done at once with Unavailable.
  template <typename T, typename Fn>
  void PostWork(Done<T> done, Fn fn);
  // The same for work without a `done`; dropped once the engine stopped
  // accepting work.
  template <typename Fn>
  void RunOrPost(Fn fn);

  bool HeldByThisThread() const { return holder_ == this; }
  // For the bodies of Asio handlers wrapped by Locked, of work run by
  // PostWork/RunOrPost, and of hooks and callbacks called under the lock:
  // the analysis sees a lambda as holding nothing. Checked in debug builds.
  void AssertEngineLock() const ABSL_ASSERT_EXCLUSIVE_LOCK(engine_mu_) {
    assert(HeldByThisThread());
  }
  // Wraps an Asio completion handler so it runs under the engine lock.
  template <typename F>
  auto Locked(F f);
  void ShutdownOnLoop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- The Registry (registry.h) is called directly: registry_.FindConn.
  // The one admission check for a new socket (accept, UDP session,
  // OpenClient): sockets held (open or in a closing tail) plus connects in
  // progress against max_connections.
  bool AtConnectionLimit() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.live_conns() + connector_.attempts() >=
           options_.max_connections;
  }
  // engine_counters.cc: counts an event in counters_ (every event, watched
  // or not).
  void CountEvent(EventKind kind, uint64_t server_num, uint64_t conn_num,
                  uint64_t size, absl::string_view message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // ---- engine_watch.cc: live events, built here and queued by watch_.
  // Under the engine lock: from the loop thread's handlers and from control
  // calls running inline on gRPC threads (a Send emits kDataSent from
  // QueueSend). Never blocks on a watcher; costs one atomic load when nobody
  // watches. `data`: received bytes.
  void Emit(EventKind kind, uint64_t server_num, uint64_t conn_num,
            uint64_t size = 0, absl::string_view data = {},
            absl::string_view message = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Pushes the snapshot events of watcher `id` and activates it.
  void TakeSnapshot(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // The parts: each holds `EngineImpl&` and reaches into the coordinator
  // for the lock, the loop, the registry, the budget and one another.
  friend class Connector;
  friend class ProxyRelay;
  friend class Receiver;
  friend class Streams;
  friend class TlsStage;
  friend class FaultStage;
  friend class UdpIo;
  friend class Servers;
  friend class ConnIo;
  friend class Closer;
  friend class Ledger;
  friend class EngineLock;
  // Declared first: destroyed last, after every socket and timer.
  asio::io_context io_;
  const EngineOptions options_;

  // The engine lock (see the top of this file): held by the loop thread
  // around each handler and by gRPC threads in inline control calls. Taken
  // before post_mu_ and the WatchHub's lock, never after them.
  absl::Mutex engine_mu_;
  // The engine whose lock this thread holds (innermost), if any.
  static thread_local EngineImpl* holder_;
  // Guards the hand-over from callers to the loop: once accepting_ is false
  // nothing more is posted, so every posted `done` is sure to run.
  absl::Mutex post_mu_;
  bool accepting_ ABSL_GUARDED_BY(post_mu_) = true;
  absl::Mutex join_mu_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_ ABSL_GUARDED_BY(join_mu_);
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
  // Compared without join_mu_, which a Shutdown on another thread may hold
  // while it joins the loop.
  std::atomic<std::thread::id> loop_thread_id_{};
  std::atomic<uint64_t> next_token_{1};

  EngineCounters counters_;  // Relaxed atomics; see engine_counters.h.
  // Watchers and their queues: the engine pushes, gRPC threads drain. Its
  // own lock.
  WatchHub watch_;

  // ---- Under engine_mu_ only below (loop thread or an inline call).
  bool shutting_down_ ABSL_GUARDED_BY(engine_mu_) = false;
  std::vector<char> scratch_;  // The one read buffer of the loop.
  // TLS on stream connections (tls_stage.h); its session cache outlives the
  // connections (registry_ is destroyed first).
  TlsStage tls_{*this};
  // Servers and connections, live and history (destroyed before io_).
  Registry registry_ ABSL_GUARDED_BY(engine_mu_);
  // The agent-wide byte bound and what each connection is charged.
  Ledger ledger_ ABSL_GUARDED_BY(engine_mu_){*this};
  Receiver receiver_{*this};  // The Receive path (receiver.h).
  // OpenClient attempts and name lookups; after io_, so destroyed first.
  Connector connector_;
  // Probe calls (agent/prober.h): their own state, on the loop thread
  // without the engine lock; names on the engine's resolver pool.
  // Destroyed before io_.
  std::unique_ptr<Prober> prober_;
  // Perf runs (agent/perf.h): the same arrangement as the Prober's.
  std::unique_ptr<PerfRunner> perf_;
  // The parts acting on connections and servers (each header says what
  // it owns); all under engine_mu_.
  ProxyRelay proxy_{*this};
  FaultStage faults_{*this};
  UdpIo udp_{*this};
  Servers servers_{*this};
  ConnIo conn_io_{*this};
  Closer closer_{*this};
  Streams streams_{*this};  // Stream attachments (streams.h).
};

// Holds the engine lock and marks this thread as its holder. Scoped, so
// clang's -Wthread-safety knows what it holds.
class ABSL_SCOPED_LOCKABLE EngineLock {
 public:
  explicit EngineLock(EngineImpl* engine)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(engine->engine_mu_)
      : engine_(engine), prev_(EngineImpl::holder_) {
    engine_->engine_mu_.Lock();
    EngineImpl::holder_ = engine_;
  }
  ~EngineLock() ABSL_UNLOCK_FUNCTION() {
    EngineImpl::holder_ = prev_;
    engine_->engine_mu_.Unlock();
  }
  EngineLock(const EngineLock&) = delete;
  EngineLock& operator=(const EngineLock&) = delete;

 private:
  EngineImpl* const engine_;
  EngineImpl* const prev_;
};

template <typename F>
auto EngineImpl::Locked(F f) {
  return [this, f = std::move(f)](auto&&... args) mutable {
    EngineLock lock(this);
    f(std::forward<decltype(args)>(args)...);
  };
}

// Helpers shared by the engine_*.cc files.
// Datagrams read per readiness wakeup before yielding to other sockets.
inline constexpr int kDatagramsPerWakeup = 64;
// Largest UDP payload over IPv4.
inline constexpr size_t kMaxDatagram = 65507;
// (Ids, selectors and Snapshot are in registry.h.)
int64_t SteadyNowNs();
absl::Status ShuttingDownError();
const char* CloseReasonText(CloseReason reason);
std::chrono::steady_clock::duration ToSteady(absl::Duration d);
// A new UDP peer's datagram dropped (no session made for it); at
// kConnectionLimit also a rejected connection.
void CountNewPeerDrop(EngineCounters& counters, DropReason reason,
                      uint64_t size);
// A peer session's datagram sent from its server's queue (no event).
void CountQueuedDatagramSent(EngineCounters& counters, uint64_t size);
// Moves c to `state`, keeping EngineCounters::half_closed in step (every
// change of c.state after it opened goes through here).
void SetConnState(EngineCounters& counters, Conn& c, ConnectionState state);
// close() of a socket descriptor Asio does not own; `abort`: SO_LINGER 0
// first, so the peer gets RST.
void CloseDescriptor(int fd, bool abort);

// Here so every engine_*.cc file can post public calls.
template <typename T, typename Fn>
void EngineImpl::PostWork(Done<T> done, Fn fn) {
  if (!HeldByThisThread()) {
    EngineLock lock(this);
    bool accepting = false;
    {
      absl::MutexLock post_lock(&post_mu_);
      accepting = accepting_;
    }
    if (!accepting || shutting_down_) {
      done(ShuttingDownError());
      return;
    }
    fn(std::move(done));
    return;
  }
  {
    absl::MutexLock lock(&post_mu_);
    if (accepting_) {
      asio::post(io_, Locked([this, fn = std::move(fn),
                              done = std::move(done)]() mutable {
                   AssertEngineLock();
                   if (shutting_down_) {
                     done(ShuttingDownError());
                     return;
                   }
                   fn(std::move(done));
                 }));
      return;
    }
  }
  done(ShuttingDownError());
}

template <typename Fn>
void EngineImpl::RunOrPost(Fn fn) {
  if (!HeldByThisThread()) {
    EngineLock lock(this);
    {
      absl::MutexLock post_lock(&post_mu_);
      if (!accepting_) return;
    }
    if (!shutting_down_) fn();
    return;
  }
  absl::MutexLock lock(&post_mu_);
  if (!accepting_) return;
  asio::post(io_, Locked([this, fn = std::move(fn)]() mutable {
               AssertEngineLock();
               if (!shutting_down_) fn();
             }));
}

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_IMPL_H_
