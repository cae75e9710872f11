#include "service/stream_reactor.h"

#include <grpcpp/alarm.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/call_registry.h"
#include "service/convert.h"
#include "service/log.h"
#include "service/malloc_tuning.h"
#include "service/status_mapping.h"

namespace sockagent {
namespace {

// How long the caller's half-close waits before it becomes our FIN: a
// cancel that follows within this time (grpc-js sends END_STREAM, then
// RST_STREAM) is the caller going away, which leaves an attached
// connection open. The proto's Stream comment states it.
constexpr auto kHalfCloseGrace = std::chrono::milliseconds(100);

class StreamReactor;

// What a reactor shares with engine completions and with EndStreams, which
// may run after the reactor is gone (they find `reactor` null then). `mu`
// guards the reactor's whole state.
struct StreamShared {
  absl::Mutex mu;
  StreamReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
};

// Engine calls decided under the lock and made after it is released: an
// engine call may complete inline (at shutdown), and its completion takes
// the lock again.
struct EngineOps {
  uint64_t attachment = 0;
  std::optional<v1::StreamStart> start;
  absl::Time deadline = absl::InfiniteFuture();  // For opening.
  std::optional<std::string> send;
  bool receive = false;
  bool shutdown_write = false;
  bool detach = false;
};

}  // namespace

struct StreamRegistry final : CallRegistry<StreamShared> {};

namespace {

// State changes happen under shared_->mu only. gRPC operations: at most
// one read and one write in flight; Finish once, never with a write in
// flight (OnWriteDone does a finish wanted meanwhile), so
// Server::Shutdown never waits on a stuck stream. Engine completions run
// under the engine lock, inline in the engine call or on the loop thread;
// engine calls are made without shared_->mu held (EngineOps).
class StreamReactor final : public StreamBidiReactor {
 public:
  StreamReactor(Engine* engine, std::shared_ptr<StreamRegistry> registry,
                std::shared_ptr<StreamShared> shared,
                grpc::CallbackServerContext* context)
      : context_(context),
        engine_(engine),
        registry_(std::move(registry)),
        shared_(std::move(shared)),
        deadline_(DeadlineOf(context)) {}

  void Begin(const absl::Status& refused) {
    absl::MutexLock lock(&shared_->mu);
    shared_->reactor = this;
    if (!refused.ok()) {
      EndLocked(ToGrpcStatus(refused));
      return;
    }
    StartRead(&request_buf_);
  }

  Engine* engine() const { return engine_; }

  // EndStreams: the agent is shutting down.
  void EndForShutdown(EngineOps* ops) {
    EndLocked(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent shutting down"));
    TakeDetach(ops);
  }

  void OnReadDone(bool ok) override {
    EngineOps ops;
    {
      absl::MutexLock lock(&shared_->mu);
      if (!end_wanted_) HandleRead(ok, &ops);
      TakeDetach(&ops);
    }
    Run(engine_, shared_, std::move(ops));
  }

  void OnWriteDone(bool ok) override {
    EngineOps ops;
    {
      absl::MutexLock lock(&shared_->mu);
      writing_ = false;
      write_buf_.Clear();
      if (!ok || end_wanted_) {
        // !ok: the caller is gone; OnCancel follows or came already.
        EndLocked(grpc::Status::CANCELLED);
      } else {
        PumpWrites(&ops);
        MaybeFinishLocked();
      }
      TakeDetach(&ops);
    }
    Run(engine_, shared_, std::move(ops));
  }

  void OnCancel() override {
    EngineOps ops;
    {
      absl::MutexLock lock(&shared_->mu);
      EndLocked(grpc::Status::CANCELLED);
      TakeDetach(&ops);
    }
    Run(engine_, shared_, std::move(ops));
  }

  void OnDone() override {
    EngineOps ops;
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
      TakeDetach(&ops);
    }
    Run(engine_, shared_, std::move(ops));
    const bool last = registry_->Remove(shared_);
    // What the relay's buffers left in the heap goes back (malloc_tuning.h).
    if (last) ReleaseFreedMemory();
    delete this;
  }

  // ---- Engine completions (engine lock held), under shared_->mu.
  void OnAttached(absl::StatusOr<StreamAttachment> result, EngineOps* ops) {
    if (!result.ok()) {
      EndLocked(ToGrpcStatus(result.status()));
      return;
    }
    attachment_ = result->token;
    udp_ = result->connection.transport == Transport::kUdp;
    if (end_wanted_) {
      TakeDetach(ops);  // Ended while attaching: let go (closes an opened one).
      return;
    }
    v1::StreamResponse& first = outbox_.emplace_back();
    ConnectionInfoToProto(result->connection, first.mutable_connection());
    PumpWrites(ops);
    StartRead(&request_buf_);
  }

  void OnChunk(absl::StatusOr<StreamChunk> chunk, EngineOps* ops) {
    receiving_ = false;
    if (end_wanted_) return;
    if (!chunk.ok()) {
      EndLocked(ToGrpcStatus(chunk.status()));
      return;
    }
    if (!chunk->data.empty()) {
      outbox_.emplace_back().set_data(std::move(chunk->data));
    }
    for (DatagramInfo& d : chunk->datagrams) {
      v1::Datagram* out = outbox_.emplace_back().mutable_datagram();
      out->set_data(std::move(d.data));
      SocketAddressToProto(d.peer, out->mutable_peer());
      TimeToProto(d.received_at, out->mutable_received_at());
    }
    if ((chunk->peer_closed || chunk->closed) && !read_side_done_) {
      read_side_done_ = true;
      v1::EndOfStream* eos = outbox_.emplace_back().mutable_end_of_stream();
      eos->set_reason(CloseReasonToProto(
          chunk->closed ? chunk->reason : CloseReason::kPeerClosed));
      eos->set_detail(chunk->detail);
    }
    if (chunk->closed) connection_closed_ = true;
    PumpWrites(ops);
    MaybeFinishLocked();
  }

  void OnSent(const absl::Status& status, EngineOps* ops) {
    if (end_wanted_) return;
    if (!status.ok()) {
      EndLocked(ToGrpcStatus(status));
      return;
    }
    if (SendNextPiece(ops)) return;
    StartRead(&request_buf_);
  }

  void OnFinSent(const absl::Status& status) {
    if (end_wanted_) return;
    if (!status.ok()) {
      EndLocked(ToGrpcStatus(status));
      return;
    }
    write_side_done_ = true;
    MaybeFinishLocked();
  }

  // Makes the engine calls in `ops`; the completions find the reactor
  // through `shared` (or not, once it is done).
  static void Run(Engine* engine, const std::shared_ptr<StreamShared>& shared,
                  EngineOps ops) {
    if (ops.start.has_value()) Attach(engine, shared, *ops.start, ops.deadline);
    if (ops.send.has_value()) {
      engine->StreamSend(
          ops.attachment, *std::move(ops.send), [shared](absl::Status status) {
            Dispatch(shared, [&](StreamReactor* r, EngineOps* next) {
              r->OnSent(status, next);
            });
          });
    }
    if (ops.shutdown_write) {
      engine->StreamShutdownWrite(
          ops.attachment, [shared](absl::Status status) {
            Dispatch(shared, [&](StreamReactor* r, EngineOps*) {
              r->OnFinSent(status);
            });
          });
    }
    if (ops.receive) {
      engine->StreamReceive(
          ops.attachment, 0, [shared](absl::StatusOr<StreamChunk> chunk) {
            Dispatch(shared, [&](StreamReactor* r, EngineOps* next) {
              r->OnChunk(std::move(chunk), next);
            });
          });
    }
    if (ops.detach) engine->DetachStream(ops.attachment);
  }

 private:
  // Runs `fn` on the live reactor under the lock, then the engine calls it
  // asked for.
  // False when the reactor is gone.
  template <typename Fn>
  static bool Dispatch(const std::shared_ptr<StreamShared>& shared, Fn fn) {
    EngineOps ops;
    Engine* engine = nullptr;
    {
      absl::MutexLock lock(&shared->mu);
      StreamReactor* r = shared->reactor;
      if (r == nullptr) return false;
      fn(r, &ops);
      r->TakeDetach(&ops);
      engine = r->engine_;
    }
    Run(engine, shared, std::move(ops));
    return true;
  }

  static void Attach(Engine* engine,
                     const std::shared_ptr<StreamShared>& shared,
                     const v1::StreamStart& start, absl::Time deadline) {
    auto done = [engine, shared](absl::StatusOr<StreamAttachment> result) {
      const uint64_t token = result.ok() ? result->token : 0;
      const bool alive =
          Dispatch(shared, [&](StreamReactor* r, EngineOps* next) {
            r->OnAttached(std::move(result), next);
          });
      // The call ended while attaching: nobody will detach it otherwise.
      if (!alive && token != 0) engine->DetachStream(token);
    };
    if (start.has_open()) {
      // Validated in HandleRead.
      absl::StatusOr<ClientSpec> spec = ClientSpecFromProto(start.open());
      engine->OpenStream(*std::move(spec), deadline, std::move(done));
    } else {
      engine->AttachStream(start.attach_connection_id(),
                           /*close_on_detach=*/false, std::move(done));
    }
  }

  // Parses the message just read into request_; false (and the call ends
  // INVALID_ARGUMENT, detaching as when the caller goes away) when it does
  // not parse.
  bool ParseRequest() {
    ++messages_read_;
    request_.Clear();
    const grpc::Status parsed =
        grpc::SerializationTraits<v1::StreamRequest>::Deserialize(&request_buf_,
                                                                  &request_);
    request_buf_.Clear();
    if (parsed.ok()) return true;
    const std::string message =
        absl::StrCat("stream: message ", messages_read_, ": ",
                     MalformedRequestMessage(v1::StreamRequest::descriptor()));
    LogEvent(LogLevel::kWarn, "malformed_request",
             {{"method", "/sockagent.v1.SocketAgent/Stream"},
              {"peer", context_->peer()},
              {"msg", message}});
    EndLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message));
    return false;
  }

  void HandleRead(bool ok, EngineOps* ops) {
    if (ok && !ParseRequest()) return;
    if (attachment_ == 0) {
      // The first message.
      if (!ok) {
        EndLocked(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            "stream: the caller closed before sending its StreamStart"));
        return;
      }
      if (!request_.has_start()) {
        EndLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                               "stream: the first message must be a "
                               "StreamStart (attach_connection_id or open)"));
        return;
      }
      const v1::StreamStart& start = request_.start();
      absl::Status invalid;
      if (start.has_open()) {
        invalid = ClientSpecFromProto(start.open()).status();
      } else if (start.attach_connection_id().empty()) {
        invalid = absl::InvalidArgumentError(
            "stream: StreamStart needs attach_connection_id or open");
      }
      if (!invalid.ok()) {
        EndLocked(ToGrpcStatus(invalid));
        return;
      }
      ops->start = start;
      ops->deadline = deadline_;
      return;
    }
    if (!ok) {
      // A read also fails when the call is cancelled, maybe before
      // OnCancel runs: that is not a half-close, and must not shut down
      // the write side of a connection that was only attached.
      if (context_->IsCancelled()) {
        EndLocked(grpc::Status::CANCELLED);
        return;
      }
      // The caller's half-close (WritesDone), or the first half of a
      // cancel: grpc-js (Node's http2) cancels and expires deadlines by
      // ending its side (END_STREAM) and resetting the stream a moment
      // later, and gRPC may tell us of the reset on another thread after
      // this. So the FIN waits kHalfCloseGrace for a cancel to show.
      StartHalfCloseGrace();
      return;
    }
    if (!request_.has_data()) {
      EndLocked(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          request_.has_start()
              ? "stream: StreamStart is only for the first message"
              : "stream: a message after the first must carry data"));
      return;
    }
    inbound_ = std::move(*request_.mutable_data());
    inbound_offset_ = 0;
    inbound_pending_ = true;
    request_.Clear();
    SendNextPiece(ops);
  }

  void StartHalfCloseGrace() {
    half_close_alarm_ = std::make_unique<grpc::Alarm>();
    half_close_alarm_->Set(std::chrono::system_clock::now() + kHalfCloseGrace,
                           [shared = shared_](bool fired) {
                             if (!fired)
                               return;  // Cancelled: the reactor is done.
                             Dispatch(shared,
                                      [](StreamReactor* r, EngineOps* next) {
                                        r->OnHalfCloseGrace(next);
                                      });
                           });
  }

  // The caller half-closed kHalfCloseGrace ago and is still there: FIN
  // after what is queued (UDP: our side is done).
  void OnHalfCloseGrace(EngineOps* ops) {
    if (end_wanted_) return;
    if (context_->IsCancelled()) {
      EndLocked(grpc::Status::CANCELLED);
      return;
    }
    if (udp_) {
      write_side_done_ = true;
      MaybeFinishLocked();
    } else {
      ops->attachment = attachment_;
      ops->shutdown_write = true;
    }
  }

  // Hands the engine the next piece of the last request (pieces of at most
  // max_send_bytes; a datagram whole). False when the request is done.
  bool SendNextPiece(EngineOps* ops) {
    if (!inbound_pending_) return false;
    const size_t piece = engine_->options().max_send_bytes;
    std::string data;
    if (udp_ || (inbound_offset_ == 0 && inbound_.size() <= piece)) {
      data = std::move(inbound_);
      inbound_.clear();
      inbound_pending_ = false;
    } else {
      data = inbound_.substr(inbound_offset_, piece);
      inbound_offset_ += data.size();
      if (inbound_offset_ >= inbound_.size()) {
        inbound_.clear();
        inbound_pending_ = false;
      }
    }
    ops->attachment = attachment_;
    ops->send = std::move(data);
    return true;
  }

  void PumpWrites(EngineOps* ops) {
    if (!writing_ && !outbox_.empty() && !end_wanted_) {
      bool own_buffer = false;
      const grpc::Status serialized =
          grpc::SerializationTraits<v1::StreamResponse>::Serialize(
              outbox_.front(), &write_buf_, &own_buffer);
      outbox_.pop_front();
      if (!serialized.ok()) {
        EndLocked(grpc::Status(
            grpc::StatusCode::INTERNAL,
            absl::StrCat("stream: could not serialize a response: ",
                         serialized.error_message())));
        return;
      }
      writing_ = true;
      StartWrite(&write_buf_);
      return;
    }
    // Everything written: the socket may be read again.
    if (outbox_.empty() && !writing_ && !receiving_ && !read_side_done_ &&
        !end_wanted_ && attachment_ != 0) {
      receiving_ = true;
      ops->attachment = attachment_;
      ops->receive = true;
    }
  }

  // Ends with OK once the peer's side ended (and was written out) and
  // ours did too, or the connection closed.
  void MaybeFinishLocked() {
    if (end_wanted_ || writing_ || !outbox_.empty()) return;
    if (read_side_done_ && (write_side_done_ || connection_closed_)) {
      EndLocked(grpc::Status::OK);
    }
  }

  // Finishes once, with the first status asked for; deferred to
  // OnWriteDone while a write is in flight.
  void EndLocked(const grpc::Status& status) {
    if (finished_) return;
    if (!end_wanted_) {
      end_wanted_ = true;
      end_status_ = status;
      detach_wanted_ = true;
    }
    if (!writing_) FinishLocked();
  }

  void FinishLocked() {
    finished_ = true;
    Finish(end_status_);
  }

  // Moves a wanted detach into `ops`, once.
  void TakeDetach(EngineOps* ops) {
    if (!detach_wanted_ || attachment_ == 0 || detached_) return;
    detached_ = true;
    ops->attachment = attachment_;
    ops->detach = true;
  }

  grpc::CallbackServerContext* const context_;
  Engine* const engine_;
  const std::shared_ptr<StreamRegistry> registry_;
  const std::shared_ptr<StreamShared> shared_;
  const absl::Time deadline_;
  grpc::ByteBuffer request_buf_;  // The raw message being read.
  v1::StreamRequest request_;     // Parsed from it.
  uint64_t messages_read_ = 0;
  // Responses waiting to be written. Holds at most one engine receive's
  // worth; the one in flight is serialized in write_buf_ (alive until
  // OnWriteDone) while writing_.
  std::deque<v1::StreamResponse> outbox_;
  grpc::ByteBuffer write_buf_;
  std::string inbound_;  // The request being handed to the engine.
  size_t inbound_offset_ = 0;
  bool inbound_pending_ = false;
  uint64_t attachment_ = 0;
  bool udp_ = false;
  bool writing_ = false;
  bool receiving_ = false;
  bool write_side_done_ = false;    // Our FIN went out (UDP: caller done).
  bool read_side_done_ = false;     // EndOfStream queued.
  bool connection_closed_ = false;  // Nothing more can flow either way.
  bool end_wanted_ = false;
  bool finished_ = false;
  bool detach_wanted_ = false;
  bool detached_ = false;
  grpc::Status end_status_;
  // Set once the caller half-closed (StartHalfCloseGrace).
  std::unique_ptr<grpc::Alarm> half_close_alarm_;
};

}  // namespace

std::shared_ptr<StreamRegistry> NewStreamRegistry() {
  return std::make_shared<StreamRegistry>();
}

void EndStreams(StreamRegistry& registry) {
  for (const auto& shared : registry.EndAll()) {
    EngineOps ops;
    Engine* engine = nullptr;
    {
      absl::MutexLock lock(&shared->mu);
      if (shared->reactor == nullptr) continue;
      shared->reactor->EndForShutdown(&ops);
      engine = shared->reactor->engine();
    }
    StreamReactor::Run(engine, shared, std::move(ops));
  }
}

StreamBidiReactor* NewStreamReactor(Engine& engine,
                                    std::shared_ptr<StreamRegistry> registry,
                                    grpc::CallbackServerContext* context) {
  auto shared = std::make_shared<StreamShared>();
  const absl::Status refused = registry->Add(shared);
  auto* reactor = new StreamReactor(&engine, registry, shared, context);
  reactor->Begin(refused);
  return reactor;
}

}  // namespace sockagent
