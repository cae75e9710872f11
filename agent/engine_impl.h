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
//   budget_    (buffer_budget.h)  the agent-wide buffered bytes and its
//                                 watermarks (pause/resume reading, trim);
//   watch_     (watch_hub.h)      watchers and their bounded event queues
//                                 (its own lock, taken after the engine's).
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
#include "agent/connector.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"
#include "agent/engine_sockets.h"
#include "agent/fifo.h"
#include "agent/prober.h"
#include "agent/proxy.h"
#include "agent/registry.h"
#include "agent/resolver.h"
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

  // Holds the engine lock and marks this thread as its holder. Scoped, so
  // clang's -Wthread-safety knows what it holds.
  class ABSL_SCOPED_LOCKABLE EngineLock {
   public:
    explicit EngineLock(EngineImpl* engine)
        ABSL_EXCLUSIVE_LOCK_FUNCTION(engine->engine_mu_)
        : engine_(engine), prev_(holder_) {
      engine_->engine_mu_.Lock();
      holder_ = engine_;
    }
    ~EngineLock() ABSL_UNLOCK_FUNCTION() {
      holder_ = prev_;
      engine_->engine_mu_.Unlock();
    }
    EngineLock(const EngineLock&) = delete;
    EngineLock& operator=(const EngineLock&) = delete;

   private:
    EngineImpl* const engine_;
    EngineImpl* const prev_;
  };
  bool HeldByThisThread() const { return holder_ == this; }
  // For the bodies of Asio handlers wrapped by Locked, of work run by
  // PostWork/RunOrPost, and of hooks and callbacks called under the lock:
  // the analysis sees a lambda as holding nothing. Checked in debug builds.
  void AssertEngineLock() const ABSL_ASSERT_EXCLUSIVE_LOCK(engine_mu_) {
    assert(HeldByThisThread());
  }
  // Wraps an Asio completion handler so it runs under the engine lock.
  template <typename F>
  auto Locked(F f) {
    return [this, f = std::move(f)](auto&&... args) mutable {
      EngineLock lock(this);
      f(std::forward<decltype(args)>(args)...);
    };
  }
  void ShutdownOnLoop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- The Registry (registry.h), as the I/O files call it.
  Conn* FindConn(uint64_t num) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.FindConn(num);
  }
  Server* FindServer(uint64_t num) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.FindServer(num);
  }
  absl::StatusOr<Conn*> LookupConn(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.LookupConn(id);
  }
  uint64_t NewConnNum() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.NewConnNum();
  }
  Conn& AddConn(std::unique_ptr<Conn> conn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.AddConn(std::move(conn));
  }
  // The one admission check for a new socket (accept, UDP session,
  // OpenClient): sockets held (open or in a closing tail) plus connects in
  // progress against max_connections.
  bool AtConnectionLimit() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return registry_.live_conns() + connector_.attempts() >=
           options_.max_connections;
  }
  // Finalize's last step: c's socket is closed, its record (and its bytes)
  // join the closed history, and trimming is scheduled.
  void FileInHistory(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- Byte accounting: the BufferBudget (buffer_budget.h) and what a
  // connection is charged.
  // What `c` holds now: buffered payload plus kDatagramOverheadBytes per
  // queued datagram.
  static uint64_t RecvCharge(const Conn& c);
  static uint64_t SendCharge(const Conn& c);
  // Brings c.charged (and the budget) up to date after c's buffers
  // changed; call after every change.
  void Recharge(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  uint64_t TotalRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return budget_.Room();
  }
  absl::Status CheckTotalRoom(absl::string_view what, uint64_t more) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return budget_.CheckRoom(what, more);
  }
  // Reading of `c` stopped at the agent-wide bound: the budget resumes it
  // (posted) once the total falls to three quarters of it.
  void PauseForTotal(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    if (c.reading.total_paused) return;
    c.reading.total_paused = true;
    budget_.Pause(c.num);
  }
  // The budget's resume hook.
  void ResumeTotalPaused(uint64_t num)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Discards the unreceived bytes of a history record (history bound).
  void DiscardHistoryBytes(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // engine_counters.cc: counts an event in counters_ (every event, watched
  // or not).
  void CountEvent(EventKind kind, uint64_t server_num, uint64_t conn_num,
                  uint64_t size, absl::string_view message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // A new UDP peer's datagram dropped (no session made for it); at
  // kConnectionLimit also a rejected connection.
  void CountNewPeerDrop(DropReason reason, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // A peer session's datagram sent from its server's queue (no event).
  void CountQueuedDatagramSent(uint64_t size);
  void NoteReleased(uint64_t bytes) const {
    if (options_.on_memory_released && bytes > 0) {
      options_.on_memory_released(bytes);
    }
  }

  void DoSend(absl::string_view id, std::string data,
              Done<absl::StatusOr<SendResult>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoCloseConnections(const Selector& selector, CloseMode mode,
                          Done<absl::StatusOr<CloseResult>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // History bounds: trimming is posted, so no caller ever sees the object
  // it is working on disappear.
  void ScheduleTrim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void TrimHistory() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_receive.cc: Receive, parked Receives, give-way.
  // `attachment`: the Stream receiving (0: a Receive call, refused while
  // a Stream is attached).
  void DoReceive(absl::string_view id, const ReceiveSpec& spec, uint64_t token,
                 Done<absl::StatusOr<ReceiveResult>> done,
                 uint64_t attachment = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoCancelReceive(uint64_t token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Takes what a Receive may take now (data, end of stream or the closed
  // connection's status).
  absl::StatusOr<ReceiveResult> TakeReceive(Conn& c, const ReceiveSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // True when a parked Receive on `c` can complete.
  bool ReceiveReady(const Conn& c, const ReceiveSpec& spec,
                    size_t* scanned) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Stream transports: how many bytes a Receive with `spec` takes now; 0
  // while its condition (min_bytes, delimiter) is unmet and the peer has
  // not closed. `scanned` (optional) carries the delimiter search forward.
  size_t ReadyBytes(const Conn& c, const ReceiveSpec& spec,
                    size_t* scanned) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Completes the parked Receive of `c`, if any, with TakeReceive (or
  // Cancelled, taking nothing, when its caller is gone).
  void CompleteReceive(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  static bool CallerGone(const PendingReceive& pending);
  // A second Receive on `c` (whose receive is parked, caller alive):
  // waits as c.receive->next, or fails at once when one waits already.
  void ContendReceive(Conn& c, const ReceiveSpec& spec, uint64_t token,
                      Done<absl::StatusOr<ReceiveResult>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnGiveWayTimer(uint64_t num, uint64_t token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void NotifyReceiver(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    if (c.receive != nullptr &&
        ReceiveReady(c, c.receive->spec, &c.receive->scanned)) {
      CompleteReceive(c);
    }
  }
  void OnReceiveTimer(uint64_t num, uint64_t token)
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

  // ---- engine_stream.cc: Stream attachments.
  absl::StatusOr<StreamAttachment> DoAttach(Conn& c, bool close_on_detach)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoStreamReceive(uint64_t attachment, size_t max_bytes, uint64_t token,
                       Done<absl::StatusOr<StreamChunk>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoStreamSend(uint64_t attachment, std::string data,
                    Done<absl::Status> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoStreamShutdownWrite(uint64_t attachment, Done<absl::Status> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoDetachStream(uint64_t attachment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Why `op` cannot proceed on closed `c`: Aborted after a reset,
  // Unavailable after an error or at shutdown, FailedPrecondition else.
  absl::Status ClosedStatus(const Conn& c, absl::string_view op) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Queues a waiting StreamSend once the send buffer has room for it, or
  // fails it once the connection closed. Called whenever c's send buffer
  // drains or c closes.
  void PumpStreamSend(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // The attachment of a live connection; null when detached or gone.
  Attachment* FindAttachment(uint64_t token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Its connection (and the attachment in `*attachment`); null when either
  // is gone.
  Conn* AttachedConn(uint64_t token, Attachment** attachment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_conn.cc: stream connection I/O and the connection timers.
  // Like everything below, called with the engine lock held: from a loop
  // handler, or inline from a public call on the caller's thread.
  void StartConnection(Conn& c, absl::Duration ttl, absl::Duration idle_timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ArmRead(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnReadable(uint64_t num, const asio::error_code& ec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ReadStream(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // The buffer bound is reached: stop reading, watch for errors.
  void PauseReading(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Bytes the kernel took from c's send queue: consumed and counted.
  void NoteWritten(Conn& c, size_t written)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // While a stream connection does not read (peer FIN, or paused), waits
  // for a socket error so a reset is still noticed.
  void ArmErrorWatch(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnErrorWatch(uint64_t num, const asio::error_code& ec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Bytes the next read may take without exceeding a bound (0: pause).
  size_t ReadRoom(const Conn& c) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DeliverStream(Conn& c, const char* data, size_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ResumeReading(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnPeerFin(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnStreamError(Conn& c, const asio::error_code& ec, absl::string_view op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // `stream`: a StreamSend, which waited for room already and may take the
  // buffer past send_buffer_bytes by this one chunk.
  absl::StatusOr<SendResult> QueueSend(Conn& c, std::string data,
                                       bool stream = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Send's answer once writing found `c` broken (it is finalized).
  absl::Status SendFailure(const Conn& c, uint64_t lost) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void Flush(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ArmWrite(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnWritable(uint64_t num, const asio::error_code& ec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void SendFin(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ShutdownWrite(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void Touch(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnConnTimer(uint64_t num, ConnTimer which)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  enum class WriteOutcome { kWrote, kBlocked, kFailed };
  // One write of at most `limit` queued bytes (Flush's step).
  WriteOutcome WriteQueued(Conn& c, size_t limit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_faults.cc: the faults' SEND stage and their calls.
  void FlushFaulted(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ApplyMatchingFaults(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  bool FaultMatches(const FaultSpec& spec, const Conn& c) const;
  void ApplyFault(Conn& c, uint64_t id, FaultInfo& info)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void RemoveFaultFrom(Conn& c, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DropFaults(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ArmFaultTimer(Conn& c, int64_t due_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnFaultTimer(uint64_t num) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DiscardQueued(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  absl::Status CheckFaultTarget(const FaultTarget& target)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_tls.cc: TLS on a stream connection (agent/tls.h). Hooks:
  // ReadStream, Flush, SendFin and ArmRead hand TLS connections here;
  // Finalize calls EndTls.
  static bool TlsActive(const Conn& c) {
    return c.extra != nullptr && c.extra->tls != nullptr &&
           c.extra->tls->session != nullptr;
  }
  // Makes c's session (server: `server`, client: `client`) on its socket
  // and arms the handshake timer (its timeout, capped by `deadline`, the
  // OpenClient call's). False: it could not; c is finalized.
  bool StartTls(Conn& c, const std::shared_ptr<const TlsServerContext>& server,
                const std::shared_ptr<const TlsClientContext>& client,
                absl::Time deadline = absl::InfiniteFuture())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Runs the handshake as far as the socket allows. True once it is done
  // (then queued bytes are flushed); false while waiting (the wait is
  // armed) or when it failed (c is finalized).
  bool DriveTlsHandshake(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ReadTls(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void FlushTls(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // A read without waiting for readability (OpenSSL holds bytes).
  void PostTlsRead(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void FailTls(Conn& c, const TlsIo& r, absl::string_view op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void NoteTlsError(Conn& c, std::string detail)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void FailTlsHandshake(Conn& c, absl::string_view words)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnTlsHandshakeTimer(uint64_t num)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // OpenClient waiting for the handshake of conn `id`: answered now if it
  // has ended, else when it ends.
  void AwaitTlsHandshake(absl::string_view id,
                         Done<absl::StatusOr<ConnectionInfo>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // From Finalize: answers a waiting OpenClient, frees the session.
  void EndTls(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_close.cc: closing, tails, and the closed record.
  // Graceful: flush, FIN, drain until peer FIN or close_linger. Abort: RST.
  void StartClose(Conn& c, CloseReason reason, std::string detail, bool abort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Bookkeeping of "this connection is now closed" (state, counters,
  // timers, parked Receive, event) without touching the socket.
  void MarkClosed(Conn& c, CloseReason reason, std::string detail)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Closes the socket (abort: SO_LINGER 0, RST) and files the record.
  void Finalize(Conn& c, bool abort) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ArmLingerTimer(Conn& c, absl::Duration after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Hands c.raw_fd to the reactor (c.stream). False: it could not, and the
  // connection is finalized with the error.
  bool AdoptSocket(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Writes the greeting of a greeting-and-close server and its FIN straight
  // after accept and leaves a quick tail. False when the greeting did not
  // go out whole (`*greeted`: the bytes that did): the reactor path goes on.
  bool GreetAndClose(Server& s, Conn& c, size_t* greeted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Quick tails: greeting-and-close connections whose greeting and FIN
  // went out at accept wait outside the reactor; a loop-wide timer settles
  // each one once, with one recv: the peer's FIN or reset finalizes it,
  // anything else (silence, bytes) hands it to the reactor's tail.
  void ArmQuickTailTimer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void CheckQuickTails() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void SettleQuickTail(Conn& c, absl::Duration age)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_server.cc: starting (binding) and stopping servers.
  void DoStartServer(ServerSpec spec, Done<absl::StatusOr<ServerInfo>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void BindIpServer(ServerSpec spec,
                    const std::shared_ptr<const std::string>& greeting,
                    const IpEndpoints& endpoints,
                    Done<absl::StatusOr<ServerInfo>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  absl::Status BindAll(Server& s, const ServerSpec& spec,
                       const IpEndpoints& endpoints, bool* retry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  absl::Status BindUnix(Server& s, const ServerSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Named specs, with the engine lock held just before binding: answers
  // `done` and returns true when nothing is to bind (the same server is
  // there, its spec differs and no replace, or a dry run); otherwise sets
  // *replacing to the server to stop first (or nullptr), *difference to
  // how it differs, and returns false.
  bool SettleName(const ServerSpec& spec, absl::string_view greeting,
                  Done<absl::StatusOr<ServerInfo>>& done, Server** replacing,
                  std::string* difference)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ActivateServer(std::unique_ptr<Server> server,
                      Done<absl::StatusOr<ServerInfo>> done,
                      StartOutcome outcome = StartOutcome::kCreated,
                      std::string difference = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Closes the listeners and UDP sockets (ending UDP sessions with
  // `conn_reason`, counted in `closed`); accepted stream connections stay
  // (DoStopServers closes them, in one pass for all stopped servers).
  void StopServer(Server& s, absl::string_view reason, CloseReason conn_reason,
                  uint64_t* closed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void DoStopServers(const Selector& selector, bool close_connections,
                     Done<absl::StatusOr<StopResult>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_listener.cc: accepting on TCP and UNIX listeners.
  void ArmAccept(Server& s, size_t index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnAcceptReady(uint64_t server_num, size_t index,
                     const asio::error_code& ec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // `fd`: a socket from accept4 (non-blocking, close-on-exec), now ours;
  // `remote`/`remote_len`: the peer's address as accept4 reported it.
  void OnAccepted(Server& s, const Listener& listener, int fd,
                  const sockaddr_storage& remote, socklen_t remote_len)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- engine_udp.cc: UDP clients, server sockets and peer sessions.
  void ReadUdpClient(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void FlushUdpClient(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Appends a datagram to c's receive queue, or drops and counts it.
  void BufferDatagram(Conn& c, const char* data, size_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ArmUdpRead(Server& s, size_t index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnUdpReadable(uint64_t server_num, size_t index,
                     const asio::error_code& ec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnDatagram(Server& s, size_t index, const asio::ip::udp::endpoint& from,
                  const char* data, size_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  Conn* NewUdpSession(Server& s, size_t index,
                      const asio::ip::udp::endpoint& from)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // Before an echo or greeting reply of `reply_bytes` to a datagram of
  // `received` bytes from `from`: true if the server's reply budget lets it
  // go; otherwise counts the drop and emits kDatagramDropped saying why
  // (agent/engine_udp_reply.cc).
  bool AdmitUdpReply(Server& s, Conn& c, const asio::ip::udp::endpoint& from,
                     size_t received, size_t reply_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  // One datagram from a server socket to a session's peer; queued while the
  // socket is not writable. Errors are the caller's to report.
  absl::Status SendSessionDatagram(Conn& c, std::string data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void ArmUdpWrite(Server& s, size_t index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);
  void OnUdpWritable(uint64_t server_num, size_t index,
                     const asio::error_code& ec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

  // ---- connector.h: OpenClient and name resolution. The Connector
  // reaches into the engine for io_, options_, Locked, AtConnectionLimit
  // and AddOpenedConn, nothing else.
  friend class Connector;
  // ---- proxy.h: the proxy behaviour's relay, on the same I/O paths.
  friend class ProxyRelay;
  void DoOpenClient(ClientSpec spec, absl::Time deadline,
                    Done<absl::StatusOr<ConnectionInfo>> done) {
    connector_.Open(std::move(spec), deadline, std::move(done));
  }
  // Files the connection `a` opened (its socket moves to the record),
  // starts reading it, and describes it (engine_conn.cc).
  ConnectionInfo AddOpenedConn(ClientAttempt& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_);

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
  // Client TLS sessions for resumption; destroyed after the connections.
  TlsSessionCache tls_sessions_;
  // Servers and connections, live and history (destroyed before io_).
  Registry registry_ ABSL_GUARDED_BY(engine_mu_);
  // The agent-wide byte bound; fires ResumeTotalPaused and ScheduleTrim.
  BufferBudget budget_ ABSL_GUARDED_BY(engine_mu_);
  bool trim_posted_ ABSL_GUARDED_BY(engine_mu_) = false;
  struct QuickTail {
    uint64_t conn_num = 0;
    int64_t since_ns = 0;  // Steady clock.
  };
  std::deque<QuickTail> quick_tails_;  // Oldest first.
  std::unique_ptr<Timer> quick_tail_timer_;
  bool quick_tail_armed_ = false;
  absl::flat_hash_map<uint64_t, uint64_t> receive_tokens_  // -> conn num.
      ABSL_GUARDED_BY(engine_mu_);
  // OpenClient attempts and name lookups; after io_, so destroyed first.
  Connector connector_;
  // Probe calls (agent/prober.h): their own state, on the loop thread
  // without the engine lock; names on the engine's resolver pool.
  // Destroyed before io_.
  std::unique_ptr<Prober> prober_;
  ProxyRelay proxy_{*this};
  FaultTable faults_ ABSL_GUARDED_BY(engine_mu_);
  absl::flat_hash_map<uint64_t, Attachment> attachments_;  // By token.
};

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
