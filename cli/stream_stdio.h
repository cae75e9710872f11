// stdin and stdout attached to Stream RPC calls, for `connect`, `attach`
// (cmd_stream.cc) and `listen` (cmd_listen.cc): a thread that copies stdin
// into whichever call is attached, the copy of a call's bytes to stdout, and
// the --idle end of a UDP session (UDP has no end of stream).
//
//   StdinFeeder feeder({.chunk = kStreamChunk});
//   feeder.Attach(call.get());
//   UdpIdle idle(ctx.get(), &feeder, absl::Seconds(2));
//   const bool stdout_ok = CopyStreamToStdout(*call, *ctx, &idle, nullptr);
//   feeder.Release(ctx.get());
//   grpc::Status status = call->Finish();
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "cli/client.h"

namespace sockctl {

// Bytes read from stdin per message at most on a byte stream (TCP, UNIX).
// Large enough that a file or a fast pipe moves in few messages (~1 MiB
// messages are gRPC's fastest: BENCHMARKS.md, "Profiles", the Stream
// relay), well under gRPC's default 4 MiB.
inline constexpr size_t kStreamChunk = 1024 * 1024;
// UDP: one read of stdin is one datagram (as `nc -u`), at most the largest
// IPv4 UDP payload.
inline constexpr size_t kDatagramChunk = 65507;

// `request` serialized, for StreamCall::Write (the start message).
grpc::ByteBuffer SerializedRequest(const sockagent::v1::StreamRequest& request);

// A StreamRequest whose `data` is `bytes`, serialized as two slices: the
// field's tag and length, then `bytes` itself, referenced, not copied.
grpc::ByteBuffer DataRequest(const grpc::Slice& bytes);

// Writes all of `data` to fd 1; false once stdout is gone.
bool WriteStdout(const std::string& data);

// Copies stdin to whichever call is attached, on its own thread, for as
// long as it lives: `listen -k` feeds one stdin to its sessions in turn. At
// most one chunk is held while no call is attached (the next call gets it).
// Only this thread writes to an attached call; Release() hands the call
// back to the caller. When stdin ends, the attached call is half-closed
// (WritesDone: FIN on TCP).
class StdinFeeder final {
 public:
  struct Options {
    // Bytes per message at most.
    size_t chunk = 1024 * 1024;
    // Each read of stdin is one message (UDP `listen`: a line on a terminal
    // is one datagram); otherwise a message also takes what else is ready
    // in the pipe, up to `chunk`.
    bool one_read_per_message = false;
    // Make a pipe on stdin hold a whole chunk, so that its writer keeps
    // filling while a message is sent (best effort).
    bool grow_pipe = false;
  };

  explicit StdinFeeder(Options options);
  ~StdinFeeder();
  StdinFeeder(const StdinFeeder&) = delete;
  StdinFeeder& operator=(const StdinFeeder&) = delete;

  // Stdin goes to `call` from now on; if stdin already ended, the call is
  // half-closed at once.
  void Attach(StreamCall* call);

  // Stops writing to the attached call and returns once no write to it is
  // in progress; a write still blocked after a grace second (the peer may
  // never read it) is cancelled through `ctx`. Returns whether the call was
  // half-closed already.
  bool Release(grpc::ClientContext* ctx);

  // When stdin ended (EOF or a read error); nullopt while it has not.
  std::optional<absl::Time> ended_at();

 private:
  // Reads the next chunk into buf[0, cap); nullopt at the end.
  std::optional<size_t> ReadChunk(uint8_t* buf, size_t cap);
  void Run();
  void GrowStdinPipe() const;

  const Options options_;
  int wake_[2] = {-1, -1};
  std::mutex mu_;
  std::condition_variable cv_;
  StreamCall* call_ = nullptr;  // Attached; null between calls.
  bool writing_ = false;        // A Write/WritesDone on a call is running.
  bool half_closed_ = false;    // WritesDone was sent on the attached call.
  std::optional<absl::Time> eof_at_;
  bool stopping_ = false;
  std::thread thread_;
};

// Cancels a UDP session through `ctx` once stdin ended and no datagram came
// for `idle`: counted from the latest of its construction, stdin's end and
// the last datagram (with `listen -k`, a session that starts after stdin
// ended still lasts `idle`). Touch() on every datagram.
class UdpIdle final {
 public:
  UdpIdle(grpc::ClientContext* ctx, StdinFeeder* feeder, absl::Duration idle);
  ~UdpIdle();
  UdpIdle(const UdpIdle&) = delete;
  UdpIdle& operator=(const UdpIdle&) = delete;

  void Touch();
  // Whether it cancelled the session (then CANCELLED is the normal end).
  bool fired() const { return fired_.load(); }

 private:
  void Run();

  grpc::ClientContext* const ctx_;
  StdinFeeder* const feeder_;
  const absl::Duration idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  absl::Time last_;  // Construction or the last datagram.
  bool done_ = false;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

// Reads `call` until it ends: data and datagrams to stdout (touching `idle`,
// if any, on each datagram), each end_of_stream message to `on_end` (may be
// null). Returns false when stdout is gone; the call was then cancelled
// through `ctx`.
bool CopyStreamToStdout(
    StreamCall& call, grpc::ClientContext& ctx, UdpIdle* idle,
    const std::function<void(const sockagent::v1::StreamResponse&)>& on_end);

}  // namespace sockctl
