// Streams: the Stream RPC's attachments. One caller attached to a
// connection receives its bytes in order and sends with backpressure. It
// owns the attachments (by token); a connection knows its attachment's
// token (ConnExtra::attachment).
//
// Receiving reuses the Receiver (the attachment's token lets it past the
// "a Stream is attached" refusal). Sending differs from Send: a chunk that
// does not fit the send buffer waits (Attachment::waiting) instead of
// being refused, and Pump queues it as soon as the buffer drains or fails
// it once the connection closes. So a stream holds at most
// send_buffer_bytes plus one chunk, and the caller reads its next chunk
// only after the engine took the previous one.
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held (EngineImpl's public Stream calls post here with
// PostWork; the I/O paths call Pump). Entry points assert it for clang's
// analysis (AssertEngineLock).
//
//   absl::StatusOr<StreamAttachment> a = streams_.Attach(c, false);
//   streams_.Pump(c);  // after c's send buffer drained, or c closed
#ifndef SOCKAGENT_AGENT_STREAMS_H_
#define SOCKAGENT_AGENT_STREAMS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class Streams {
 public:
  explicit Streams(EngineImpl& engine) : engine_(engine) {}
  Streams(const Streams&) = delete;
  Streams& operator=(const Streams&) = delete;

  // Attaches a new Stream to `c` (refused when closed, attached already, a
  // proxy half, or a Receive waits on it).
  absl::StatusOr<StreamAttachment> Attach(Conn& c, bool close_on_detach);
  void Receive(uint64_t attachment, size_t max_bytes, uint64_t token,
               Done<absl::StatusOr<StreamChunk>> done);
  void Send(uint64_t attachment, std::string data, Done<absl::Status> done);
  void ShutdownWrite(uint64_t attachment, Done<absl::Status> done);
  void Detach(uint64_t attachment);
  // Queues a waiting chunk once c's send buffer has room for it, or fails
  // it once c closed; answers a waiting ShutdownWrite once the FIN went.
  // Called whenever c's send buffer drains or c closes.
  void Pump(Conn& c);

  // Why `op` cannot proceed on closed `c`: Aborted after a reset,
  // Unavailable after an error or at shutdown, FailedPrecondition else.
  static absl::Status ClosedStatus(const Conn& c, absl::string_view op);

 private:
  // The attachment of a live connection; null when detached or gone.
  Attachment* Find(uint64_t token);
  // Its connection (and the attachment in `*attachment`); null when either
  // is gone.
  Conn* AttachedConn(uint64_t token, Attachment** attachment);

  EngineImpl& engine_;
  absl::flat_hash_map<uint64_t, Attachment> attachments_;  // By token.
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_STREAMS_H_
