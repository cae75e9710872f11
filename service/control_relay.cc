#include "service/control_relay.h"

#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <thread>
#include <utility>

#include "absl/time/clock.h"

namespace sockagent {

class ControlRelay::Impl {
 public:
  Impl(const ControlRelayOptions& options, CutCallback on_cut)
      : options_(options),
        on_cut_(std::move(on_cut)),
        agent_(options.agent_rst_per_second, options.agent_rst_burst),
        work_(asio::make_work_guard(io_)) {}

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

  void Add(int client_fd, int grpc_side_fd, int key, uint64_t seq);

  const ControlRelayOptions options_;
  const CutCallback on_cut_;
  TokenBucket agent_;  // Relay thread only.
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
  Pipe(ControlRelay::Impl* relay, int key, uint64_t seq)
      : relay_(relay),
        key_(key),
        seq_(seq),
        client_(relay->io_),
        grpc_(relay->io_),
        timer_(relay->io_),
        scanner_(relay->options_.limits),
        size_(relay->options_.buffer_bytes) {}

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
    ReadUp();
    ReadDown();
  }

 private:
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
    asio::error_code ec;
    const size_t n = ReadNow(client_, up_, size_, ec);
    if (ec == asio::error::would_block) {
      up_.reset();
      client_.async_wait(Socket::wait_read, [self = shared_from_this()](
                                                const asio::error_code& ec) {
        if (self->closed_) return;
        if (ec) return self->CloseAll();
        self->ReadUp();
      });
      return;
    }
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
    ScanUp();
  }

  void ScanUp() {
    if (closed_) return;
    const absl::string_view rest(up_.get() + up_pos_, up_len_ - up_pos_);
    const ScanResult r = scanner_.Scan(rest, absl::Now(), relay_->agent_);
    if (r.verdict == ScanResult::Verdict::kCut) {
      relay_->on_cut_(key_, seq_, r.reason);
      return CloseAll();
    }
    const size_t start = up_pos_;
    up_pos_ += r.forward;
    const bool pause = r.verdict == ScanResult::Verdict::kPause;
    const absl::Duration wait = r.wait;
    if (pause) relay_->throttled_.store(absl::ToUnixNanos(absl::Now()));
    auto next = [self = shared_from_this(), pause, wait] {
      if (self->closed_) return;
      if (!pause) return self->ReadUp();
      // The agent-wide bucket is empty: this connection is not read until a
      // token is due.
      self->timer_.expires_after(absl::ToChronoNanoseconds(wait));
      self->timer_.async_wait([self](const asio::error_code& ec) {
        if (!ec) self->ScanUp();
      });
    };
    if (r.forward == 0) return next();
    asio::async_write(
        grpc_, asio::buffer(up_.get() + start, r.forward),
        [self = shared_from_this(), next](const asio::error_code& ec, size_t) {
          if (self->closed_) return;
          if (ec) return self->CloseAll();
          next();
        });
  }

  // gRPC -> client: unchanged. gRPC closing its end closes the client's.
  void ReadDown() {
    asio::error_code ec;
    const size_t n = ReadNow(grpc_, down_, size_, ec);
    if (ec == asio::error::would_block) {
      down_.reset();
      grpc_.async_wait(Socket::wait_read,
                       [self = shared_from_this()](const asio::error_code& ec) {
                         if (self->closed_) return;
                         if (ec) return self->CloseAll();
                         self->ReadDown();
                       });
      return;
    }
    if (ec) return CloseAll();  // EOF included: gRPC closed the connection.
    asio::async_write(
        client_, asio::buffer(down_.get(), n),
        [self = shared_from_this()](const asio::error_code& ec, size_t) {
          if (self->closed_) return;
          if (ec) return self->CloseAll();
          self->ReadDown();
        });
  }

  void CloseAll() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    timer_.cancel();
    client_.close(ignored);
    grpc_.close(ignored);
  }

  ControlRelay::Impl* const relay_;  // Outlives every Pipe (see ~Impl).
  const int key_;
  const uint64_t seq_;
  Socket client_;
  Socket grpc_;
  asio::steady_timer timer_;
  H2ClientScanner scanner_;
  const size_t size_;
  std::unique_ptr<char[]> up_;  // Null while waiting to read.
  size_t up_len_ = 0;
  size_t up_pos_ = 0;
  std::unique_ptr<char[]> down_;
  bool closed_ = false;
};

}  // namespace

void ControlRelay::Impl::Add(int client_fd, int grpc_side_fd, int key,
                             uint64_t seq) {
  auto pipe = std::make_shared<Pipe>(this, key, seq);
  if (!pipe->Assign(client_fd, grpc_side_fd)) return;
  // If the relay stops before this runs, the handler (and with it the pipe
  // and both descriptors) is destroyed with the io_context.
  asio::post(io_, [pipe] { pipe->Begin(); });
}

ControlRelay::ControlRelay(const ControlRelayOptions& options,
                           CutCallback on_cut)
    : impl_(std::make_unique<Impl>(options, std::move(on_cut))) {}

ControlRelay::~ControlRelay() { Stop(); }

void ControlRelay::Start() { impl_->Start(); }

void ControlRelay::Add(int client_fd, int grpc_side_fd, int key, uint64_t seq) {
  impl_->Add(client_fd, grpc_side_fd, key, seq);
}

void ControlRelay::Stop() { impl_->Stop(); }

absl::Time ControlRelay::last_throttled() const {
  const int64_t ns = impl_->throttled_.load();
  return ns == 0 ? absl::InfinitePast() : absl::FromUnixNanos(ns);
}

}  // namespace sockagent
