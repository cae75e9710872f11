// EngineImpl: creation, the loop thread, posting, shutdown, the registry of
// servers and connections, listings, and the Send/Receive/Close entry
// points. Socket I/O lives in engine_conn.cc, servers in engine_server.cc,
// OpenClient and name lookups in engine_client.cc.
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
    const EngineOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  auto engine = std::make_unique<engine_internal::EngineImpl>(options);
  engine->Start();
  return engine;
}

namespace engine_internal {

namespace {

// One read takes at most this much; 256 KiB read best on this hardware
// (TOOLCHAIN.md). One buffer for the whole loop.
constexpr size_t kScratchBytes = 256 * 1024;
constexpr size_t kDefaultReceiveBytes = 64 * 1024;
constexpr size_t kDefaultPageSize = 100;
constexpr size_t kMaxPageSize = 1000;

size_t PageSize(size_t requested) {
  if (requested == 0) return kDefaultPageSize;
  return std::min(requested, kMaxPageSize);
}

// Page tokens are the id of the last item returned; items are ordered by
// their number, so the next page starts after it.
absl::StatusOr<uint64_t> PageStart(absl::string_view token,
                                   absl::string_view prefix) {
  if (token.empty()) return 0;
  std::optional<uint64_t> num = ParseId(token, prefix);
  if (!num.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token ", QuoteInput(token), " is not valid"));
  }
  return *num;
}

}  // namespace

absl::Status CheckSelector(const Selector& selector) {
  if (!selector.id.empty() && !selector.labels.empty()) {
    return absl::InvalidArgumentError(
        "give either an id or a label selector, not both");
  }
  if (selector.id.empty() && selector.labels.empty()) {
    return absl::InvalidArgumentError(
        "give an id or a non-empty label selector");
  }
  return CheckLabels(selector.labels, "label_selector");
}

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string ServerId(uint64_t num) { return absl::StrCat("srv-", num); }
std::string ConnId(uint64_t num) { return absl::StrCat("conn-", num); }

std::optional<uint64_t> ParseId(absl::string_view id,
                                absl::string_view prefix) {
  if (!absl::ConsumePrefix(&id, prefix) || id.empty()) return std::nullopt;
  for (char c : id) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t num = 0;
  if (!absl::SimpleAtoi(id, &num) || num == 0) return std::nullopt;
  return num;
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

bool LabelsMatch(const std::shared_ptr<const Labels>& labels,
                 const Labels& selector) {
  if (selector.empty()) return true;
  if (labels == nullptr) return false;
  for (const auto& [key, value] : selector) {
    auto it = labels->find(key);
    if (it == labels->end() || it->second != value) return false;
  }
  return true;
}

std::chrono::steady_clock::duration ToSteady(absl::Duration d) {
  // Far enough for any timer, and no overflow when added to now().
  constexpr absl::Duration kMax = absl::Hours(24 * 365 * 100);
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(std::clamp(d, absl::ZeroDuration(), kMax)));
}

thread_local EngineImpl* EngineImpl::holder_ = nullptr;

EngineImpl::EngineImpl(const EngineOptions& options)
    : io_(1),
      options_(options),
      prober_(std::make_unique<Prober>(
          io_, ProberOptions{.policy = &options_.policy})),
      scratch_(kScratchBytes) {}

EngineImpl::~EngineImpl() {
  Shutdown();
  // The loop is joined: nothing else touches resolver_. This waits for
  // lookups still running in libc; their results are posted to a stopped
  // io_ and dropped.
  resolver_.reset();
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
      asio::post(io_, Locked([this] { ShutdownOnLoop(); }));
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
    if (absl::Status s = CheckLabels(spec.labels, "labels"); !s.ok()) {
      d(s);
      return;
    }
    DoStartServer(std::move(spec), std::move(d));
  });
}

void EngineImpl::StopServers(Selector selector, bool close_connections,
                             Done<absl::StatusOr<StopResult>> done) {
  PostWork(std::move(done),
           [this, selector = std::move(selector),
            close_connections](Done<absl::StatusOr<StopResult>> d) {
             DoStopServers(selector, close_connections, std::move(d));
           });
}

void EngineImpl::ListServers(ServerFilter filter,
                             Done<absl::StatusOr<Page<ServerInfo>>> done) {
  PostWork(std::move(done), [this, filter = std::move(filter)](
                                Done<absl::StatusOr<Page<ServerInfo>>> d) {
    DoListServers(filter, std::move(d));
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
    DoListConnections(filter, std::move(d));
  });
}

void EngineImpl::Send(std::string connection_id, std::string data,
                      Done<absl::StatusOr<SendResult>> done) {
  PostWork(std::move(done),
           [this, id = std::move(connection_id), data = std::move(data)](
               Done<absl::StatusOr<SendResult>> d) mutable {
             DoSend(id, std::move(data), std::move(d));
           });
}

uint64_t EngineImpl::Receive(std::string connection_id, ReceiveSpec spec,
                             Done<absl::StatusOr<ReceiveResult>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  PostWork(std::move(done), [this, id = std::move(connection_id), spec,
                             token](Done<absl::StatusOr<ReceiveResult>> d) {
    DoReceive(id, spec, token, std::move(d));
  });
  return token;
}

void EngineImpl::CancelReceive(uint64_t token) {
  // Once Shutdown began it completes every parked receive itself.
  RunOrPost([this, token] { DoCancelReceive(token); });
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
    DoCloseConnections(selector, mode, std::move(d));
  });
}

void EngineImpl::ShutdownOnLoop() {
  shutting_down_ = true;
  prober_->Shutdown();
  // OpenClient calls in flight: their lookups and sockets die with them.
  auto attempts = std::move(attempts_);
  attempts_.clear();
  for (auto& [id, attempt] : attempts) {
    if (attempt->resolve_id != 0) CancelResolve(attempt->resolve_id);
    attempt->done(ShuttingDownError());
  }
  attempts.clear();
  // StartServer calls waiting for a name lookup.
  auto resolves = std::move(resolves_);
  resolves_.clear();
  for (auto& [id, resolve] : resolves) resolve->done(ShuttingDownError());
  resolves.clear();
  for (auto& [num, conn] : conns_) {
    if (conn->finalized) continue;
    MarkClosed(*conn, CloseReason::kAgentShutdown, "agent shutting down");
    // Bytes accepted by Send but never written: a reset tells the peer its
    // stream is incomplete, where a FIN would look like a clean end.
    Finalize(*conn, /*abort=*/conn->counters.send_buffered > 0);
  }
  for (auto& [num, server] : servers_) {
    if (!server->stopped()) {
      StopServer(*server, "agent shutdown", CloseReason::kAgentShutdown,
                 nullptr);
    }
  }
}

Conn* EngineImpl::FindConn(uint64_t num) {
  auto it = conns_.find(num);
  return it == conns_.end() ? nullptr : it->second.get();
}

Server* EngineImpl::FindServer(uint64_t num) {
  if (num == 0) return nullptr;
  auto it = servers_.find(num);
  return it == servers_.end() ? nullptr : it->second.get();
}

absl::StatusOr<Conn*> EngineImpl::LookupConn(absl::string_view id) {
  std::optional<uint64_t> num = ParseId(id, "conn-");
  Conn* c = num.has_value() ? FindConn(*num) : nullptr;
  if (c == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("connection ", QuoteInput(id), " not found"));
  }
  return c;
}

Conn& EngineImpl::AddConn(std::unique_ptr<Conn> conn) {
  Conn& c = *conn;
  conns_.emplace(c.num, std::move(conn));
  ++conns_live_;
  return c;
}

uint64_t EngineImpl::RecvCharge(const Conn& c) {
  uint64_t n = c.counters.recv_buffered;
  if (c.extra != nullptr) {
    n += kDatagramOverheadBytes * c.extra->recv_datagrams.size();
  }
  return n;
}

uint64_t EngineImpl::SendCharge(const Conn& c) {
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
  total_buffered_ = total_buffered_ - c.charged + now;
  if (c.finalized) history_bytes_ = history_bytes_ - c.charged + now;
  const bool fell = now < c.charged;
  // Buffers of a closed connection going away (discarded, or its history
  // trimmed) are memory to hand back; a live one's Receive is not.
  if (fell && c.state == ConnectionState::kClosed) {
    NoteReleased(c.charged - now);
  }
  c.charged = now;
  const uint64_t cap = options_.max_total_buffered_bytes;
  if (fell && !total_paused_.empty() && !resume_posted_ &&
      total_buffered_ <= cap - cap / 4) {
    resume_posted_ = true;
    asio::post(io_, Locked([this] { ResumeTotalPaused(); }));
  }
  if (c.finalized && history_bytes_ > cap / 4) ScheduleTrim();
}

absl::Status EngineImpl::CheckTotalRoom(absl::string_view what,
                                        uint64_t more) const {
  if (more <= TotalRoom()) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      what, ": the agent's buffers are full: ", total_buffered_,
      " bytes buffered in all connections, ", more,
      " more would exceed max_total_buffered_bytes (",
      options_.max_total_buffered_bytes, "); retry after they drain"));
}

void EngineImpl::PauseForTotal(Conn& c) {
  if (c.total_paused) return;
  c.total_paused = true;
  total_paused_.push_back(c.num);
}

void EngineImpl::ResumeTotalPaused() {
  resume_posted_ = false;
  std::vector<uint64_t> nums;
  nums.swap(total_paused_);
  for (uint64_t num : nums) {
    Conn* c = FindConn(num);
    if (c == nullptr || !c->total_paused) continue;
    c->total_paused = false;
    // Resumes unless its own buffer is still above half its bound; a
    // connection that finds the total full again pauses again.
    ResumeReading(*c);
  }
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

ConnectionInfo EngineImpl::Snapshot(const Conn& c) const {
  ConnectionInfo info;
  info.id = ConnId(c.num);
  info.transport = c.transport;
  info.local = c.local.Unpack();
  info.remote = c.remote.Unpack();
  info.origin = c.origin;
  if (c.server_num != 0) info.server_id = ServerId(c.server_num);
  info.state = c.state;
  info.close_reason = c.close_reason;
  info.counters = c.counters;
  if (c.labels != nullptr) info.labels = *c.labels;
  info.opened_at = c.opened_at;
  info.closed_at = absl::InfinitePast();
  info.ttl = absl::ZeroDuration();
  info.idle_timeout = absl::ZeroDuration();
  if (c.extra != nullptr) {
    info.close_detail = c.extra->close_detail;
    info.closed_at = c.extra->closed_at;
    info.ttl = c.extra->ttl;
    info.idle_timeout = c.extra->idle_timeout;
    info.stream_attached = c.extra->attachment != 0;
  }
  return info;
}

ServerInfo EngineImpl::Snapshot(const Server& s) const {
  ServerInfo info = s.info;  // Its greeting is empty: kept in s.greeting.
  if (s.labels != nullptr) info.labels = *s.labels;
  if (s.greeting != nullptr) {
    info.greeting_bytes = s.greeting->size();
    info.behavior.greeting = s.greeting->substr(0, kListedGreetingBytes);
  }
  return info;
}

void EngineImpl::DoListServers(const ServerFilter& filter,
                               Done<absl::StatusOr<Page<ServerInfo>>> done) {
  if (absl::Status s = CheckLabels(filter.selector, "label_selector");
      !s.ok()) {
    done(s);
    return;
  }
  absl::StatusOr<uint64_t> start = PageStart(filter.page_token, "srv-");
  if (!start.ok()) {
    done(start.status());
    return;
  }
  const size_t size = PageSize(filter.page_size);
  Page<ServerInfo> page;
  for (auto it = servers_.upper_bound(*start); it != servers_.end(); ++it) {
    const Server& s = *it->second;
    if (s.stopped() && !filter.include_stopped) continue;
    if (filter.transport.has_value() && s.info.transport != *filter.transport) {
      continue;
    }
    if (!LabelsMatch(s.labels, filter.selector)) continue;
    if (page.items.size() == size) {
      page.next_page_token = page.items.back().id;
      break;
    }
    page.items.push_back(Snapshot(s));
  }
  done(std::move(page));
}

void EngineImpl::DoListConnections(
    const ConnectionFilter& filter,
    Done<absl::StatusOr<Page<ConnectionInfo>>> done) {
  if (absl::Status s = CheckLabels(filter.selector, "label_selector");
      !s.ok()) {
    done(s);
    return;
  }
  absl::StatusOr<uint64_t> start = PageStart(filter.page_token, "conn-");
  if (!start.ok()) {
    done(start.status());
    return;
  }
  std::optional<uint64_t> server_num;
  if (!filter.server_id.empty()) {
    server_num = ParseId(filter.server_id, "srv-");
    if (!server_num.has_value()) {
      done(Page<ConnectionInfo>{});  // No such server: nothing matches.
      return;
    }
  }
  auto state_wanted = [&filter](ConnectionState state) {
    if (state == ConnectionState::kClosed && filter.include_closed) {
      return true;
    }
    if (filter.states.empty()) return state != ConnectionState::kClosed;
    return std::find(filter.states.begin(), filter.states.end(), state) !=
           filter.states.end();
  };
  const size_t size = PageSize(filter.page_size);
  Page<ConnectionInfo> page;
  for (auto it = conns_.upper_bound(*start); it != conns_.end(); ++it) {
    const Conn& c = *it->second;
    if (server_num.has_value() && c.server_num != *server_num) continue;
    if (!state_wanted(c.state)) continue;
    if (filter.transport.has_value() && c.transport != *filter.transport) {
      continue;
    }
    if (!LabelsMatch(c.labels, filter.selector)) continue;
    if (page.items.size() == size) {
      page.next_page_token = page.items.back().id;
      break;
    }
    page.items.push_back(Snapshot(c));
  }
  done(std::move(page));
}

void EngineImpl::DoSend(absl::string_view id, std::string data,
                        Done<absl::StatusOr<SendResult>> done) {
  absl::StatusOr<Conn*> c = LookupConn(id);
  if (!c.ok()) {
    done(c.status());
    return;
  }
  done(QueueSend(**c, std::move(data)));
}

void EngineImpl::DoReceive(absl::string_view id, const ReceiveSpec& spec,
                           uint64_t token,
                           Done<absl::StatusOr<ReceiveResult>> done,
                           uint64_t attachment) {
  absl::StatusOr<Conn*> found = LookupConn(id);
  if (!found.ok()) {
    done(found.status());
    return;
  }
  Conn& c = **found;
  if (c.extra != nullptr && c.extra->attachment != attachment) {
    done(absl::FailedPreconditionError(
        absl::StrCat("receive ", id,
                     ": a Stream is attached to it and receives its bytes")));
    return;
  }
  // Its caller went away (gRPC's OnCancel may run later, on another
  // thread): it must not block this one.
  if (c.receive != nullptr && CallerGone(*c.receive)) CompleteReceive(c);
  if (c.receive != nullptr) {
    if (attachment != 0) {
      done(absl::FailedPreconditionError(absl::StrCat(
          "receive ", id, ": another Receive is already waiting")));
      return;
    }
    ContendReceive(c, spec, token, std::move(done));
    return;
  }
  const absl::Duration wait = std::min(spec.wait, spec.deadline - absl::Now());
  size_t scanned = 0;
  if (ReceiveReady(c, spec, &scanned) || wait <= absl::ZeroDuration()) {
    done(TakeReceive(c, spec));
    return;
  }
  auto pending = std::make_unique<PendingReceive>();
  pending->token = token;
  pending->spec = spec;
  pending->done = std::move(done);
  pending->scanned = scanned;
  pending->timer = std::make_unique<Timer>(io_, ToSteady(wait));
  pending->timer->async_wait(
      Locked([this, num = c.num, token](const asio::error_code& ec) {
        if (!ec) OnReceiveTimer(num, token);
      }));
  c.receive = std::move(pending);
  receive_tokens_[token] = c.num;
}

bool EngineImpl::ReceiveReady(const Conn& c, const ReceiveSpec& spec,
                              size_t* scanned) const {
  if (c.eof || c.state == ConnectionState::kClosed) return true;
  if (c.transport == Transport::kUdp) return c.has_datagrams();
  return ReadyBytes(c, spec, scanned) > 0;
}

size_t EngineImpl::ReadyBytes(const Conn& c, const ReceiveSpec& spec,
                              size_t* scanned) const {
  const size_t buffered = c.recv_bytes.size();
  if (buffered == 0) return 0;
  const size_t max = std::min<uint64_t>(
      spec.max_bytes == 0 ? kDefaultReceiveBytes : spec.max_bytes,
      options_.max_receive_bytes);
  const bool closing = c.eof || c.state == ConnectionState::kClosed;
  // Never wait for more than the receive buffer can hold: reading pauses
  // there, so the condition could not be met. The same once reading
  // stopped at the agent-wide bound: nothing more comes until bytes are
  // taken.
  const size_t cap = c.read_paused && c.total_paused
                         ? buffered
                         : std::min<uint64_t>(max, options_.recv_buffer_bytes);
  if (!spec.delimiter.empty()) {
    const size_t end =
        c.recv_bytes.FindEnd(spec.delimiter, scanned ? *scanned : 0, max);
    if (end != std::string::npos) return end;
    if (scanned != nullptr) {
      const size_t searched = std::min(buffered, max);
      const size_t overlap = spec.delimiter.size() - 1;
      *scanned = searched > overlap ? searched - overlap : 0;
    }
    return buffered >= cap || closing ? std::min(buffered, max) : 0;
  }
  const size_t need = std::max<size_t>(1, std::min(spec.min_bytes, cap));
  return buffered >= need || closing ? std::min(buffered, max) : 0;
}

absl::StatusOr<ReceiveResult> EngineImpl::TakeReceive(Conn& c,
                                                      const ReceiveSpec& spec) {
  const size_t max = std::min<uint64_t>(
      spec.max_bytes == 0 ? kDefaultReceiveBytes : spec.max_bytes,
      options_.max_receive_bytes);
  ReceiveResult result;
  bool got = false;
  if (c.transport == Transport::kUdp) {
    const SocketAddress peer = c.remote.Unpack();
    size_t bytes = 0;
    while (c.has_datagrams()) {
      Fifo<ReceivedDatagram>& queue = c.extra->recv_datagrams;
      if (spec.max_datagrams != 0 &&
          result.datagrams.size() >= spec.max_datagrams) {
        break;
      }
      ReceivedDatagram& d = queue.front();
      // Always at least one whole datagram, however large. Each costs its
      // overhead too, so empty ones cannot make an answer unbounded.
      const size_t cost = d.data.size() + kDatagramOverheadBytes;
      if (!result.datagrams.empty() && bytes + cost > max) break;
      bytes += cost;
      c.counters.recv_buffered -= d.data.size();
      result.datagrams.push_back(
          DatagramInfo{std::move(d.data), peer, d.received_at});
      queue.pop_front();
    }
    got = !result.datagrams.empty();
    Recharge(c);
  } else {
    // With min_bytes or a delimiter unmet (the wait ended), nothing is
    // taken.
    const bool conditional = spec.min_bytes > 1 || !spec.delimiter.empty();
    result.data =
        c.recv_bytes.Take(conditional ? ReadyBytes(c, spec, nullptr) : max);
    c.counters.recv_buffered = c.recv_bytes.size();
    Recharge(c);
    got = !result.data.empty();
    if (got) ResumeReading(c);
  }
  result.recv_buffered = c.counters.recv_buffered;
  const bool drained = result.recv_buffered == 0;
  if (got) {
    result.end_of_stream = drained && c.eof;
    return result;
  }
  if (c.state == ConnectionState::kClosed) {
    const std::string id = ConnId(c.num);
    const std::string detail =
        c.extra != nullptr ? c.extra->close_detail : std::string();
    if (c.extra != nullptr && c.extra->history_discarded > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "receive ", id, ": connection is closed (",
          CloseReasonText(c.close_reason), ") and its ",
          c.extra->history_discarded,
          " unreceived bytes were discarded: closed connections keep at most ",
          options_.max_total_buffered_bytes / 4,
          " bytes in all (a quarter of max_total_buffered_bytes)"));
    }
    switch (c.close_reason) {
      case CloseReason::kPeerClosed:
        result.end_of_stream = true;
        return result;
      case CloseReason::kPeerReset:
        return absl::AbortedError(
            absl::StrCat("receive ", id, ": ",
                         detail.empty() ? "connection reset by peer" : detail));
      case CloseReason::kAgentShutdown:
        return ShuttingDownError();
      case CloseReason::kError:
        return absl::UnavailableError(
            absl::StrCat("receive ", id, ": ", detail));
      default:
        return absl::FailedPreconditionError(
            absl::StrCat("receive ", id, ": connection is closed (",
                         CloseReasonText(c.close_reason), ")"));
    }
  }
  result.end_of_stream = c.eof;
  return result;
}

bool EngineImpl::CallerGone(const PendingReceive& pending) {
  return pending.spec.caller_gone != nullptr && pending.spec.caller_gone();
}

void EngineImpl::ContendReceive(Conn& c, const ReceiveSpec& spec,
                                uint64_t token,
                                Done<absl::StatusOr<ReceiveResult>> done) {
  PendingReceive& parked = *c.receive;
  if (parked.next != nullptr) {
    done(absl::FailedPreconditionError(absl::StrCat(
        "receive ", ConnId(c.num), ": another Receive is already waiting")));
    return;
  }
  const absl::Time now = absl::Now();
  auto next = std::make_unique<ContendingReceive>();
  next->token = token;
  next->spec = spec;
  next->arrived = now;
  next->done = std::move(done);
  const absl::Duration give_way = std::max(
      absl::ZeroDuration(), std::min(kReceiveGiveWay, spec.deadline - now));
  next->timer = std::make_unique<Timer>(io_, ToSteady(give_way));
  next->timer->async_wait(
      Locked([this, num = c.num, token](const asio::error_code& ec) {
        if (!ec) OnGiveWayTimer(num, token);
      }));
  parked.next = std::move(next);
  receive_tokens_[token] = c.num;
}

void EngineImpl::OnGiveWayTimer(uint64_t num, uint64_t token) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->receive == nullptr || c->receive->next == nullptr ||
      c->receive->next->token != token) {
    return;
  }
  std::unique_ptr<ContendingReceive> next = std::move(c->receive->next);
  receive_tokens_.erase(token);
  next->done(absl::FailedPreconditionError(absl::StrCat(
      "receive ", ConnId(num), ": another Receive is already waiting")));
}

void EngineImpl::CompleteReceive(Conn& c) {
  std::unique_ptr<PendingReceive> pending = std::move(c.receive);
  if (pending == nullptr) return;
  receive_tokens_.erase(pending->token);
  if (pending->timer != nullptr) pending->timer->cancel();
  std::unique_ptr<ContendingReceive> next = std::move(pending->next);
  if (CallerGone(*pending)) {
    // Nobody would read the answer: leave the bytes for the next Receive.
    pending->done(absl::CancelledError(
        absl::StrCat("receive ", ConnId(c.num), ": the caller went away")));
  } else {
    pending->done(TakeReceive(c, pending->spec));
  }
  if (next == nullptr) return;
  // The Receive that waited for this one takes its place, with what is
  // left of its wait.
  next->timer->cancel();
  receive_tokens_.erase(next->token);
  ReceiveSpec spec = next->spec;
  spec.wait -= absl::Now() - next->arrived;
  DoReceive(ConnId(c.num), spec, next->token, std::move(next->done));
}

void EngineImpl::OnReceiveTimer(uint64_t num, uint64_t token) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->receive == nullptr || c->receive->token != token) {
    return;
  }
  CompleteReceive(*c);
}

void EngineImpl::DoCancelReceive(uint64_t token) {
  auto it = receive_tokens_.find(token);
  if (it == receive_tokens_.end()) return;
  Conn* c = FindConn(it->second);
  if (c == nullptr || c->receive == nullptr) return;
  if (c->receive->token == token) {
    CompleteReceive(*c);
    return;
  }
  if (c->receive->next != nullptr && c->receive->next->token == token) {
    std::unique_ptr<ContendingReceive> next = std::move(c->receive->next);
    receive_tokens_.erase(token);
    next->timer->cancel();
    next->done(absl::CancelledError(
        absl::StrCat("receive ", ConnId(c->num), ": the caller went away")));
  }
}

void EngineImpl::DoCloseConnections(const Selector& selector, CloseMode mode,
                                    Done<absl::StatusOr<CloseResult>> done) {
  if (absl::Status s = CheckSelector(selector); !s.ok()) {
    done(s);
    return;
  }
  std::vector<Conn*> targets;
  if (!selector.id.empty()) {
    absl::StatusOr<Conn*> c = LookupConn(selector.id);
    if (!c.ok()) {
      done(c.status());
      return;
    }
    targets.push_back(*c);
  } else {
    for (auto& [num, c] : conns_) {
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
    }
  }
  // Trimming of the history is posted, so these pointers stay valid.
  for (Conn* c : targets) {
    switch (mode) {
      case CloseMode::kGraceful:
        StartClose(*c, CloseReason::kLocalClose, "", /*abort=*/false);
        break;
      case CloseMode::kAbort:
        StartClose(*c, CloseReason::kLocalAbort, "", /*abort=*/true);
        break;
      case CloseMode::kShutdownWrite:
        ShutdownWrite(*c);
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
  asio::post(io_, Locked([this] { TrimHistory(); }));
}

void EngineImpl::TrimHistory() {
  trim_posted_ = false;
  while (closed_conns_.size() > options_.closed_connections_kept) {
    if (Conn* c = FindConn(closed_conns_.front())) {
      total_buffered_ -= c->charged;
      history_bytes_ -= c->charged;
      uint64_t freed = sizeof(Conn) + sizeof(ConnExtra) + c->charged;
      if (c->labels != nullptr && c->labels.use_count() == 1) {
        freed += LabelsBytes(*c->labels);
      }
      NoteReleased(freed);
      conns_.erase(c->num);
    }
    closed_conns_.pop_front();
  }
  // The bytes nobody received yet: oldest records give theirs up first.
  const uint64_t history_cap = options_.max_total_buffered_bytes / 4;
  for (size_t i = 0; i < closed_conns_.size() && history_bytes_ > history_cap;
       ++i) {
    if (Conn* c = FindConn(closed_conns_[i])) DiscardHistoryBytes(*c);
  }
  while (stopped_servers_.size() > options_.closed_connections_kept) {
    servers_.erase(stopped_servers_.front());
    stopped_servers_.pop_front();
  }
}

}  // namespace engine_internal
}  // namespace sockagent
