// EngineImpl's Stream calls (engine.h): each takes the engine lock
// (PostWork) and hands over to the Streams component (agent/streams.h).
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {

void EngineImpl::AttachStream(std::string connection_id, bool close_on_detach,
                              Done<absl::StatusOr<StreamAttachment>> done) {
  PostWork(std::move(done),
           [this, id = std::move(connection_id),
            close_on_detach](Done<absl::StatusOr<StreamAttachment>> d) {
             AssertEngineLock();
             absl::StatusOr<Conn*> c = registry_.LookupConn(id);
             if (!c.ok()) {
               d(c.status());
               return;
             }
             d(streams_.Attach(**c, close_on_detach));
           });
}

void EngineImpl::OpenStream(ClientSpec spec, absl::Time deadline,
                            Done<absl::StatusOr<StreamAttachment>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec), deadline](
                                Done<absl::StatusOr<StreamAttachment>> d) {
    connector_.Open(
        spec, deadline,
        [this,
         d = std::move(d)](absl::StatusOr<ConnectionInfo> opened) mutable {
          AssertEngineLock();
          if (!opened.ok()) {
            d(opened.status());
            return;
          }
          // Runs on the loop right after the connection was created,
          // so nobody else can attach (or Receive) first.
          std::optional<uint64_t> num = ParseId(opened->id, "conn-");
          Conn* c = num.has_value() ? registry_.FindConn(*num) : nullptr;
          if (c == nullptr) {
            d(absl::InternalError(
                absl::StrCat("stream: ", opened->id, " vanished")));
            return;
          }
          d(streams_.Attach(*c, /*close_on_detach=*/true));
        });
  });
}

uint64_t EngineImpl::StreamReceive(uint64_t attachment, size_t max_bytes,
                                   Done<absl::StatusOr<StreamChunk>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  PostWork(std::move(done), [this, attachment, max_bytes,
                             token](Done<absl::StatusOr<StreamChunk>> d) {
    AssertEngineLock();
    streams_.Receive(attachment, max_bytes, token, std::move(d));
  });
  return token;
}

void EngineImpl::StreamSend(uint64_t attachment, std::string data,
                            Done<absl::Status> done) {
  PostWork(std::move(done), [this, attachment, data = std::move(data)](
                                Done<absl::Status> d) mutable {
    AssertEngineLock();
    streams_.Send(attachment, std::move(data), std::move(d));
  });
}

void EngineImpl::StreamShutdownWrite(uint64_t attachment,
                                     Done<absl::Status> done) {
  PostWork(std::move(done), [this, attachment](Done<absl::Status> d) {
    AssertEngineLock();
    streams_.ShutdownWrite(attachment, std::move(d));
  });
}

void EngineImpl::DetachStream(uint64_t attachment) {
  // Once Shutdown began it closes the connection itself.
  RunOrPost([this, attachment] {
    AssertEngineLock();
    streams_.Detach(attachment);
  });
}

}  // namespace engine_internal
}  // namespace sockagent