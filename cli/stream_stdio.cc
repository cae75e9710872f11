// stdin and stdout attached to Stream RPC calls: see stream_stdio.h.
#include "cli/stream_stdio.h"

#include <fcntl.h>
#include <grpc/slice.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "absl/time/clock.h"

namespace sockctl {
namespace {

using sockagent::v1::StreamRequest;
using sockagent::v1::StreamResponse;

// How long Release() waits for a chunk being written before it cancels the
// write (the peer closed and may never read it).
constexpr absl::Duration kWriteGrace = absl::Seconds(1);
// A chunk read from stdin below this size is copied into a slice of its
// own; a larger one is sent in the buffer it was read into.
constexpr size_t kCopyBelowBytes = 16 * 1024;
// How often UdpIdle looks whether stdin ended.
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

}  // namespace

grpc::ByteBuffer SerializedRequest(const StreamRequest& request) {
  const std::string bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer DataRequest(const grpc::Slice& bytes) {
  // Field 2 (`data`), wire type 2 (length-delimited), then the length as a
  // varint: at most 1 + 10 bytes.
  uint8_t head[11];
  size_t used = 0;
  head[used++] =
      static_cast<uint8_t>((StreamRequest::kDataFieldNumber << 3) | 2);
  uint64_t length = bytes.size();
  while (length >= 0x80) {
    head[used++] = static_cast<uint8_t>(length | 0x80);
    length >>= 7;
  }
  head[used++] = static_cast<uint8_t>(length);
  const grpc::Slice slices[2] = {grpc::Slice(head, used), bytes};
  return grpc::ByteBuffer(slices, 2);
}

bool WriteStdout(const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(STDOUT_FILENO, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

StdinFeeder::StdinFeeder(Options options) : options_(options) {
  if (::pipe2(wake_, O_CLOEXEC) != 0) wake_[0] = wake_[1] = -1;
  thread_ = std::thread([this] { Run(); });
}

StdinFeeder::~StdinFeeder() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (wake_[1] >= 0) {
    char byte = 0;
    while (::write(wake_[1], &byte, 1) < 0 && errno == EINTR) {
    }
  }
  thread_.join();
  if (wake_[0] >= 0) ::close(wake_[0]);
  if (wake_[1] >= 0) ::close(wake_[1]);
}

void StdinFeeder::Attach(StreamCall* call) {
  std::unique_lock<std::mutex> lock(mu_);
  if (eof_at_.has_value()) {
    lock.unlock();
    call->WritesDone();
    lock.lock();
    half_closed_ = true;
    return;
  }
  call_ = call;
  half_closed_ = false;
  cv_.notify_all();
}

bool StdinFeeder::Release(grpc::ClientContext* ctx) {
  std::unique_lock<std::mutex> lock(mu_);
  call_ = nullptr;
  if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(kWriteGrace),
                    [this] { return !writing_; })) {
    ctx->TryCancel();
    cv_.wait(lock, [this] { return !writing_; });
  }
  return half_closed_;
}

std::optional<absl::Time> StdinFeeder::ended_at() {
  std::lock_guard<std::mutex> lock(mu_);
  return eof_at_;
}

// Reads the next chunk; nullopt at the end of stdin (or a read error,
// treated as its end: what was read went out) or when stopping.
std::optional<size_t> StdinFeeder::ReadChunk(uint8_t* buf, size_t cap) {
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int ready = ::poll(fds, wake_[0] >= 0 ? 2 : 1, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (fds[1].revents != 0) return std::nullopt;
    ssize_t n = ::read(STDIN_FILENO, buf, cap);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      std::cerr << "sockctl: reading stdin: " << std::strerror(errno) << "\n";
      return std::nullopt;
    }
    if (n == 0) return std::nullopt;
    // A pipe hands over at most what it holds per read (64 KiB unless
    // GrowStdinPipe made room for a message): while more is ready at once,
    // fill the message (one message per 64 KiB ran the relay at half of
    // socat -b 1M's speed, BENCHMARKS.md benchmark 3). Interactive input is
    // sent as soon as it arrives: nothing waits here.
    size_t have = static_cast<size_t>(n);
    while (!options_.one_read_per_message && have < cap) {
      pollfd more = {STDIN_FILENO, POLLIN, 0};
      if (::poll(&more, 1, 0) != 1 || (more.revents & POLLIN) == 0) break;
      n = ::read(STDIN_FILENO, buf + have, cap - have);
      if (n <= 0) break;  // EOF or an error shows again on the next read.
      have += static_cast<size_t>(n);
    }
    return have;
  }
}

void StdinFeeder::Run() {
  if (options_.grow_pipe) GrowStdinPipe();
  // Stdin is read straight into a gRPC slice that the message references
  // (DataRequest): no copy between read() and gRPC's sendmsg. gRPC may hold
  // a sent slice after Write returns, so a large chunk leaves with its
  // message and the next read gets a fresh buffer (held at most by the
  // messages in flight: Write blocks under flow control). A small chunk
  // (typed lines) is copied into a slice of its own size and the buffer is
  // read into again.
  grpc::Slice buffer;
  for (;;) {
    if (buffer.size() == 0) {
      buffer = grpc::Slice(grpc_slice_malloc(options_.chunk),
                           grpc::Slice::STEAL_REF);
    }
    // Ours alone until handed on: the slice was allocated here.
    uint8_t* const base = const_cast<uint8_t*>(buffer.begin());
    const std::optional<size_t> n = ReadChunk(base, buffer.size());
    if (!n.has_value()) break;
    grpc::Slice data;
    if (*n < kCopyBelowBytes) {
      data = grpc::Slice(base, *n);
    } else {
      data = buffer.sub(0, *n);
      buffer = grpc::Slice();
    }
    grpc::ByteBuffer message = DataRequest(data);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return call_ != nullptr || stopping_; });
    if (stopping_) return;
    StreamCall* call = call_;
    writing_ = true;
    lock.unlock();
    // Blocks while gRPC's flow control (the agent's backpressure) holds.
    // A failed write means the call ended: the chunk goes with it.
    const bool ok = call->Write(message);
    lock.lock();
    writing_ = false;
    if (!ok && call_ == call) call_ = nullptr;
    cv_.notify_all();
  }
  std::unique_lock<std::mutex> lock(mu_);
  eof_at_ = absl::Now();
  if (stopping_ || call_ == nullptr) return;
  StreamCall* call = call_;
  writing_ = true;
  // Set now, not after: a Release() that comes while WritesDone runs clears
  // call_, and must still learn that the call is half-closed (a second
  // WritesDone on a call is a gRPC assertion).
  half_closed_ = true;
  lock.unlock();
  call->WritesDone();
  lock.lock();
  writing_ = false;
  cv_.notify_all();
}

// A pipe holds 64 KiB by default, so while a Write waits the writer blocks
// after 64 KiB and the next message carries little more (~95 KiB on average
// from `head -c N /dev/zero`: 11k messages per GiB, each costing thread hops
// on both sides). With room for a whole message the writer keeps filling
// while we send. Best effort: a file or terminal is left alone; above
// fs.pipe-max-size the call fails and nothing changes.
void StdinFeeder::GrowStdinPipe() const {
  struct stat st;
  if (::fstat(STDIN_FILENO, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  const int want = static_cast<int>(options_.chunk);
  if (::fcntl(STDIN_FILENO, F_GETPIPE_SZ) >= want) return;
  (void)::fcntl(STDIN_FILENO, F_SETPIPE_SZ, want);
}

UdpIdle::UdpIdle(grpc::ClientContext* ctx, StdinFeeder* feeder,
                 absl::Duration idle)
    : ctx_(ctx), feeder_(feeder), idle_(idle), last_(absl::Now()) {
  thread_ = std::thread([this] { Run(); });
}

UdpIdle::~UdpIdle() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  thread_.join();
}

void UdpIdle::Touch() {
  std::lock_guard<std::mutex> lock(mu_);
  last_ = absl::Now();
}

void UdpIdle::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!done_) {
    // Lock order: this mu_, then the feeder's (which never calls here).
    const std::optional<absl::Time> ended = feeder_->ended_at();
    if (!ended.has_value()) {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(kPollInterval));
      continue;
    }
    const absl::Time due = std::max(last_, *ended) + idle_;
    const absl::Time now = absl::Now();
    if (now >= due) {
      fired_.store(true);
      ctx_->TryCancel();
      return;
    }
    cv_.wait_for(lock, absl::ToChronoNanoseconds(due - now));
  }
}

bool CopyStreamToStdout(
    StreamCall& call, grpc::ClientContext& ctx, UdpIdle* idle,
    const std::function<void(const StreamResponse&)>& on_end) {
  StreamResponse response;
  while (call.Read(&response)) {
    bool written = true;
    switch (response.kind_case()) {
      case StreamResponse::kData:
        written = WriteStdout(response.data());
        break;
      case StreamResponse::kDatagram:
        if (idle != nullptr) idle->Touch();
        written = WriteStdout(response.datagram().data());
        break;
      case StreamResponse::kEndOfStream:
        if (on_end) on_end(response);
        break;
      default:
        break;
    }
    if (!written) {
      ctx.TryCancel();
      return false;
    }
  }
  return true;
}

}  // namespace sockctl
