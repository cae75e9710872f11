#include "service/control_relay.h"

#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/control_tls.h"

namespace sockagent {

namespace {
class Pipe;
}  // namespace

class ControlRelay::Impl {
 public:
  Impl(const ControlRelayOptions& options, CutCallback on_cut,
       TlsFailureCallback on_tls_failure, TlsClientCallback on_tls_client)
      : options_(options),
        on_cut_(std::move(on_cut)),
        on_tls_failure_(std::move(on_tls_failure)),
        on_tls_client_(std::move(on_tls_client)),
        agent_(options.agent_rst_per_second, options.agent_rst_burst),
        streams_(options.streams),
        work_(asio::make_work_guard(io_)) {
    streams_.open = 0;
  }

  ~Impl() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { io_.run(); });
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  void Add(int client_fd, int grpc_side_fd, int key, uint64_t seq,
           std::shared_ptr<std::atomic<bool>> authenticated);

  // The agent-wide stream budget is spent: cuts the unauthenticated
  // connection holding the most open streams (`asking` only if it holds
  // more than every other). True when `asking` itself was cut.
  bool MakeRoom(Pipe* asking);

  const ControlRelayOptions options_;
  const CutCallback on_cut_;
  const TlsFailureCallback on_tls_failure_;
  const TlsClientCallback on_tls_client_;
  TokenBucket agent_;                      // Relay thread only.
  H2StreamBudget streams_;                 // Relay thread only.
  std::atomic<uint32_t> streams_open_{0};  // A copy for other threads.
  absl::flat_hash_set<Pipe*> pipes_;       // Open connections; relay thread.
  // When a connection last waited for the agent-wide bucket (Unix ns).
  std::atomic<int64_t> throttled_{0};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  bool stopped_ = false;
};

namespace {

using Socket = asio::generic::stream_protocol::socket;

// One relayed connection. Owned by its pending handlers (shared_ptr); all
// methods run on the relay's thread.
class Pipe : public std::enable_shared_from_this<Pipe> {
 public:
  Pipe(ControlRelay::Impl* relay, int key, uint64_t seq,
       std::shared_ptr<std::atomic<bool>> authenticated)
      : relay_(relay),
        key_(key),
        seq_(seq),
        authenticated_(std::move(authenticated)),
        client_(relay->io_),
        grpc_(relay->io_),
        timer_(relay->io_),
        scanner_(relay->options_.limits),
        size_(relay->options_.buffer_bytes) {
    scanner_.TrackStreams(&relay->streams_);
  }

  ~Pipe() {
    // Destroyed with the relay's io_context (its handlers held it).
    if (!closed_) {
      relay_->pipes_.erase(this);
      scanner_.Release();
    }
  }

  // False (descriptors closed) when Asio refuses one of them.
  bool Assign(int client_fd, int grpc_side_fd) {
    int domain = AF_INET;
    socklen_t len = sizeof domain;
    getsockopt(client_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    asio::error_code ec;
    client_.assign(asio::generic::stream_protocol(domain, 0), client_fd, ec);
    if (ec) {
      close(client_fd);
      close(grpc_side_fd);
      return false;
    }
    grpc_.assign(asio::generic::stream_protocol(AF_UNIX, 0), grpc_side_fd, ec);
    if (ec) {
      close(grpc_side_fd);
      return false;
    }
    client_.non_blocking(true, ec);
    grpc_.non_blocking(true, ec);
    return !ec;
  }

  void Begin() {
    relay_->pipes_.insert(this);
    if (relay_->options_.tls == nullptr) {
      ReadUp();
      ReadDown();
      return;
    }
    tls_ = std::make_unique<asio::ssl::stream<Socket&>>(
        client_, relay_->options_.tls->context());
    timer_.expires_after(
        absl::ToChronoNanoseconds(relay_->options_.handshake_timeout));
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (ec || self->closed_ || self->handshaken_) return;
      self->TlsFailed(absl::StrCat(
          "the TLS handshake did not finish within ",
          absl::FormatDuration(self->relay_->options_.handshake_timeout)));
    });
    tls_->async_handshake(
        asio::ssl::stream_base::server,
        [self = shared_from_this()](const asio::error_code& ec) {
          if (self->closed_) return;
          if (ec) return self->TlsFailed(TlsErrorText(ec));
          absl::Status checked =
              CheckHandshake(self->tls_->native_handle(),
                             self->relay_->options_.tls->mutual());
          if (!checked.ok()) {
            return self->TlsFailed(std::string(checked.message()));
          }
          self->handshaken_ = true;
          self->timer_.cancel();
          // A verified client certificate is a credential of its own.
          if (self->relay_->options_.tls->mutual()) {
            self->authenticated_->store(true);
            if (self->relay_->on_tls_client_) {
              self->relay_->on_tls_client_(
                  self->key_, self->seq_,
                  ClientCommonName(self->tls_->native_handle()));
            }
          }
          self->ReadUp();
          self->ReadDown();
        });
  }

  // Unauthenticated open streams (0 once authenticated).
  size_t open_streams() const { return scanner_.open_streams(); }
  uint64_t seq() const { return seq_; }
  bool closed() const { return closed_; }

  // Closed by the relay: reported as a cut.
  void Cut(absl::string_view reason) {
    if (closed_) return;
    relay_->on_cut_(key_, seq_, reason);
    CloseAll();
  }

 private:
  void TlsFailed(const std::string& what) {
    if (closed_ || failing_) return;
    failing_ = true;
    if (relay_->on_tls_failure_) relay_->on_tls_failure_(key_, seq_, what);
    // The alert Asio wrote goes out before a FIN; what the client sent
    // meanwhile (in TLS 1.3 its first bytes follow its Finished) is read and
    // dropped for a moment, since closing with unread bytes would send a
    // reset that makes the client lose the alert (and its reason).
    asio::error_code ignored;
    grpc_.close(ignored);
    client_.shutdown(asio::socket_base::shutdown_send, ignored);
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([self = shared_from_this()](const asio::error_code&) {
      self->CloseAll();
    });
    Drain();
  }

  void Drain() {
    static char discard[4096];  // Relay thread only; never read.
    client_.async_read_some(
        asio::buffer(discard),
        [self = shared_from_this()](const asio::error_code& ec, size_t) {
          if (self->closed_) return;
          if (ec) return self->CloseAll();
          self->Drain();
        });
  }

  // The listener (any thread) marks the connection authenticated; the scanner
  // learns it here. Relay thread.
  void SyncAuthentication() {
    if (!scanner_.authenticated() && authenticated_->load()) {
      scanner_.SetAuthenticated();
      relay_->streams_open_.store(relay_->streams_.open);
    }
  }

  // Client -> gRPC over TLS: the SSL stream may hold decrypted bytes the
  // socket no longer shows, so it is read directly (one TLS record, at most
  // 16 KiB, per read; the buffer stays while the connection is open).
  void ReadUpTls() {
    if (up_ == nullptr) up_.reset(new char[kTlsRecordBytes]);
    tls_->async_read_some(
        asio::buffer(up_.get(), kTlsRecordBytes),
        [self = shared_from_this()](const asio::error_code& ec, size_t n) {
          if (self->closed_) return;
          if (ec == asio::error::eof ||
              ec == asio::ssl::error::stream_truncated) {
            asio::error_code ignored;
            self->grpc_.shutdown(asio::socket_base::shutdown_send, ignored);
            return;
          }
          if (ec) return self->CloseAll();
          self->up_len_ = n;
          self->up_pos_ = 0;
          self->up_drained_ = false;
          self->ScanUp();
        });
  }

  // Reads what `from` has now into `buffer` (allocated on demand, so an
  // idle connection holds no buffer). Returns bytes read; 0 with `ec`
  // would_block when nothing is there.
  static size_t ReadNow(Socket& from, std::unique_ptr<char[]>& buffer,
                        size_t size, asio::error_code& ec) {
    if (buffer == nullptr) buffer.reset(new char[size]);
    return from.read_some(asio::buffer(buffer.get(), size), ec);
  }

  // Client -> gRPC: read a chunk, scan it, forward what the scanner allows.
  void ReadUp() {
    if (tls_ != nullptr) return ReadUpTls();
    asio::error_code ec;
    const size_t n = ReadNow(client_, up_, size_, ec);
    if (ec == asio::error::would_block) return WaitUp();
    if (ec == asio::error::eof) {
      // The client's FIN: gRPC sees it too; gRPC's answer still flows back.
      up_.reset();
      asio::error_code ignored;
      grpc_.shutdown(asio::socket_base::shutdown_send, ignored);
      return;
    }
    if (ec) return CloseAll();
    up_len_ = n;
    up_pos_ = 0;
    up_drained_ = n < size_;
    ScanUp();
  }

  // Waits until the client's socket is readable. The buffer goes meanwhile
  // (an idle connection holds none). Asio re-arms the descriptor here, and
  // epoll reports it at once if bytes came after the last read, so after a
  // short read the relay waits without first reading EAGAIN.
  void WaitUp() {
    up_.reset();
    inline_turns_ = 0;
    client_.async_wait(Socket::wait_read,
                       [self = shared_from_this()](const asio::error_code& ec) {
                         if (self->closed_) return;
                         if (ec) return self->CloseAll();
                         self->ReadUp();
                       });
  }

  void ScanUp() {
    if (closed_) return;
    SyncAuthentication();
    const absl::string_view rest(up_.get() + up_pos_, up_len_ - up_pos_);
    const ScanResult r = scanner_.Scan(rest, absl::Now(), relay_->agent_);
    relay_->streams_open_.store(relay_->streams_.open);
    if (r.verdict == ScanResult::Verdict::kCut) return Cut(r.reason);
    if (r.verdict == ScanResult::Verdict::kMakeRoom && r.forward == 0) {
      if (relay_->MakeRoom(this)) return;
      // Room was made by cutting another connection: scan on.
      return ScanUp();
    }
    const size_t start = up_pos_;
    up_pos_ += r.forward;
    const bool rescan = r.verdict == ScanResult::Verdict::kMakeRoom;
    const bool pause = r.verdict == ScanResult::Verdict::kPause;
    const absl::Duration wait = r.wait;
    if (pause && r.reason == kReasonAgentRstRate) {
      relay_->throttled_.store(absl::ToUnixNanos(absl::Now()));
    }
    auto next = [self = shared_from_this(), pause, rescan, wait] {
      if (self->closed_) return;
      if (rescan) return self->ScanUp();
      if (!pause) return self->NextUp();
      // The agent-wide bucket is empty: this connection is not read until a
      // token is due.
      self->timer_.expires_after(absl::ToChronoNanoseconds(wait));
      self->timer_.async_wait([self](const asio::error_code& ec) {
        if (!ec) self->ScanUp();
      });
    };
    if (r.forward == 0) return next();
    // Most writes to the socketpair complete at once: no handler to queue.
    asio::error_code ec;
    const size_t written =
        WriteNow(grpc_, absl::string_view(up_.get() + start, r.forward), ec);
    if (ec) return CloseAll();
    if (written == r.forward) return next();
    asio::async_write(
        grpc_, asio::buffer(up_.get() + start + written, r.forward - written),
        [self = shared_from_this(), next](const asio::error_code& ec, size_t) {
          if (self->closed_) return;
          if (ec) return self->CloseAll();
          self->inline_turns_ = 0;
          next();
        });
  }

  // The chunk read was forwarded whole: wait when it drained the socket,
  // else read on (a few times inline, then through the io_context so that
  // one busy connection neither grows the stack nor starves the others).
  void NextUp() {
    if (tls_ != nullptr) return ReadUpTls();  // Reads asynchronously.
    if (up_drained_) return WaitUp();
    if (++inline_turns_ < kInlineTurns) return ReadUp();
    inline_turns_ = 0;
    asio::post(relay_->io_, [self = shared_from_this()] {
      if (!self->closed_) self->ReadUp();
    });
  }

  // Writes what `to` takes now without blocking. `ec` is set only on a
  // real error (not would_block).
  static size_t WriteNow(Socket& to, absl::string_view bytes,
                         asio::error_code& ec) {
    const size_t n =
        to.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec == asio::error::would_block) ec.clear();
    return ec ? 0 : n;
  }

  // gRPC -> client: unchanged. gRPC closing its end closes the client's.
  void ReadDown() {
    asio::error_code ec;
    const size_t n = ReadNow(grpc_, down_, size_, ec);
    if (ec == asio::error::would_block) return WaitDown();
    if (ec) return CloseAll();  // EOF included: gRPC closed the connection.
    // Streams the agent ends or resets no longer count.
    scanner_.ScanAgent(absl::string_view(down_.get(), n));
    relay_->streams_open_.store(relay_->streams_.open);
    const bool drained = n < size_;
    auto done = [self = shared_from_this(), drained](const asio::error_code& ec,
                                                     size_t) {
      if (self->closed_) return;
      if (ec) return self->CloseAll();
      self->down_turns_ = 0;
      self->NextDown(drained);
    };
    if (tls_ != nullptr) {
      asio::async_write(*tls_, asio::buffer(down_.get(), n), std::move(done));
      return;
    }
    const size_t written =
        WriteNow(client_, absl::string_view(down_.get(), n), ec);
    if (ec) return CloseAll();
    if (written == n) return NextDown(drained);
    asio::async_write(client_, asio::buffer(down_.get() + written, n - written),
                      std::move(done));
  }

  void WaitDown() {
    down_.reset();
    down_turns_ = 0;
    grpc_.async_wait(Socket::wait_read,
                     [self = shared_from_this()](const asio::error_code& ec) {
                       if (self->closed_) return;
                       if (ec) return self->CloseAll();
                       self->ReadDown();
                     });
  }

  // As NextUp, for the agent's bytes.
  void NextDown(bool drained) {
    if (drained) return WaitDown();
    if (++down_turns_ < kInlineTurns) return ReadDown();
    down_turns_ = 0;
    asio::post(relay_->io_, [self = shared_from_this()] {
      if (!self->closed_) self->ReadDown();
    });
  }

  void CloseAll() {
    if (closed_) return;
    closed_ = true;
    relay_->pipes_.erase(this);
    scanner_.Release();
    relay_->streams_open_.store(relay_->streams_.open);
    asio::error_code ignored;
    timer_.cancel();
    client_.close(ignored);
    grpc_.close(ignored);
  }

  // One TLS record's plaintext.
  static constexpr size_t kTlsRecordBytes = 16 * 1024;
  // Full buffers a direction forwards inline before yielding to others.
  static constexpr int kInlineTurns = 4;

  ControlRelay::Impl* const relay_;  // Outlives every Pipe (see ~Impl).
  const int key_;
  const uint64_t seq_;
  const std::shared_ptr<std::atomic<bool>> authenticated_;
  Socket client_;
  Socket grpc_;
  // Over client_, when the relay serves TLS (declared after it: destroyed
  // first).
  std::unique_ptr<asio::ssl::stream<Socket&>> tls_;
  bool handshaken_ = false;
  bool failing_ = false;  // The handshake failed; closing softly.
  asio::steady_timer timer_;
  H2ClientScanner scanner_;
  const size_t size_;
  std::unique_ptr<char[]> up_;  // Null while waiting to read.
  size_t up_len_ = 0;
  size_t up_pos_ = 0;
  bool up_drained_ = false;  // The last read emptied the client's socket.
  int inline_turns_ = 0;
  std::unique_ptr<char[]> down_;
  int down_turns_ = 0;
  bool closed_ = false;
};

}  // namespace

bool ControlRelay::Impl::MakeRoom(Pipe* asking) {
  // The connection holding the most unauthenticated streams (ties: the
  // oldest); the asking one only if it holds more than every other, so a
  // new client's first call still gets in.
  Pipe* victim = nullptr;
  for (Pipe* p : pipes_) {
    const size_t open = p->open_streams();
    if (p == asking || p->closed() || open == 0) continue;
    if (victim == nullptr || open > victim->open_streams() ||
        (open == victim->open_streams() && p->seq() < victim->seq())) {
      victim = p;
    }
  }
  if (victim == nullptr || asking->open_streams() > victim->open_streams()) {
    victim = asking;
  }
  victim->Cut("unauthenticated_streams_total");
  return victim == asking;
}

void ControlRelay::Impl::Add(int client_fd, int grpc_side_fd, int key,
                             uint64_t seq,
                             std::shared_ptr<std::atomic<bool>> authenticated) {
  auto pipe = std::make_shared<Pipe>(this, key, seq, std::move(authenticated));
  if (!pipe->Assign(client_fd, grpc_side_fd)) return;
  // If the relay stops before this runs, the handler (and with it the pipe
  // and both descriptors) is destroyed with the io_context.
  asio::post(io_, [pipe] { pipe->Begin(); });
}

ControlRelay::ControlRelay(const ControlRelayOptions& options,
                           CutCallback on_cut,
                           TlsFailureCallback on_tls_failure,
                           TlsClientCallback on_tls_client)
    : impl_(std::make_unique<Impl>(options, std::move(on_cut),
                                   std::move(on_tls_failure),
                                   std::move(on_tls_client))) {}

ControlRelay::~ControlRelay() { Stop(); }

void ControlRelay::Start() { impl_->Start(); }

void ControlRelay::Add(int client_fd, int grpc_side_fd, int key, uint64_t seq,
                       std::shared_ptr<std::atomic<bool>> authenticated) {
  impl_->Add(client_fd, grpc_side_fd, key, seq, std::move(authenticated));
}

uint32_t ControlRelay::unauthenticated_streams() const {
  return impl_->streams_open_.load();
}

void ControlRelay::Stop() { impl_->Stop(); }

absl::Time ControlRelay::last_throttled() const {
  const int64_t ns = impl_->throttled_.load();
  return ns == 0 ? absl::InfinitePast() : absl::FromUnixNanos(ns);
}

}  // namespace sockagent
