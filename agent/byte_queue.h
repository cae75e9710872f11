// ByteQueue: a bounded-by-its-user FIFO of bytes for connection buffers.
//
// Layout: a Fifo of chunks; the front chunk may be partly consumed.
//
//   chunks:  [ xxxxxx|aaaaaaaa ] [ bbbbbbbbbbbb ] [ cccc ]
//              ^      ^                                ^
//              |      head_offset                      back: small appends
//              consumed                                coalesce here
//   size = bytes after head_offset = |a| + |b| + |c|
//
// Appending never moves queued bytes; small appends coalesce into the last
// chunk (up to kCoalesceBytes) so a trickle of tiny reads does not cost a
// heap block per read. An empty queue is one null pointer and owns no
// memory (each connection has two). The queue does not enforce a bound:
// the engine checks its limits before appending.
//
// Not thread-safe: the engine uses it under its engine lock only (on the
// loop thread, or on a gRPC thread inside an inline control call).
#ifndef SOCKAGENT_AGENT_BYTE_QUEUE_H_
#define SOCKAGENT_AGENT_BYTE_QUEUE_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "agent/fifo.h"

namespace sockagent {

class ByteQueue {
 public:
  // Chunks grow by appending up to this size; larger appends get their own.
  static constexpr size_t kCoalesceBytes = 16 * 1024;

  size_t size() const { return state_ == nullptr ? 0 : state_->size; }
  bool empty() const { return state_ == nullptr; }

  void Append(absl::string_view data);
  // The same, taking over `data`'s buffer instead of copying when it gets a
  // chunk of its own (Send and Stream chunks: no copy of the payload).
  void AppendOwned(std::string&& data);

  // Removes and returns up to `max` bytes from the front.
  std::string Take(size_t max);

  // Points out[0..n) at the first queued bytes, at most `max_spans` spans;
  // returns n. The spans stay valid until the queue is next modified.
  size_t Peek(absl::string_view* out, size_t max_spans) const;

  // The offset just past the first occurrence of `needle` that starts at or
  // after `from` and ends within the first `limit` bytes; npos if none.
  // `from` lets a caller that already searched a shorter queue skip ahead.
  size_t FindEnd(absl::string_view needle, size_t from, size_t limit) const;

  // Drops `n` <= size() bytes from the front (after they were written).
  void Consume(size_t n);

  void Clear() { state_.reset(); }

 private:
  struct State {
    Fifo<std::string> chunks;
    size_t head_offset = 0;  // Bytes of chunks.front() already consumed.
    size_t size = 0;
  };
  // Whether `needle` starts at byte `offset` of chunk `chunk` (the match
  // may run on into the following chunks).
  bool MatchesAt(size_t chunk, size_t offset, absl::string_view needle) const;
  absl::string_view Span(size_t chunk) const;

  // Invariant: null exactly when the queue is empty.
  std::unique_ptr<State> state_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_BYTE_QUEUE_H_
