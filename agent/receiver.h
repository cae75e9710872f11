// Receiver: the engine's Receive path. It takes buffered bytes or datagrams
// for a Receive (or a Stream's receive), parks a Receive until its
// condition is met or its wait ends, lets a second Receive wait briefly for
// a parked one whose caller went away (kReceiveGiveWay), and cancels by
// token. It owns the token -> connection index of the parked Receives; the
// parked Receive itself lives on its connection (Conn::receive).
//
// Lock: a member of EngineImpl, guarded by the engine lock like every
// engine object. Every method is called with that lock held (inline from
// Receive/StreamReceive on a gRPC thread, or from the loop's handlers: a
// read calls Notify); its timers' handlers take it (EngineImpl::Locked).
// Each entry point tells clang's analysis so (AssertEngineLock).
//
//   receiver_.Receive(id, spec, token, std::move(done));  // Receive RPC
//   receiver_.Notify(c);  // after bytes arrived, a FIN or a close
#ifndef SOCKAGENT_AGENT_RECEIVER_H_
#define SOCKAGENT_AGENT_RECEIVER_H_

#include <cstddef>
#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class Receiver {
 public:
  explicit Receiver(EngineImpl& engine) : engine_(engine) {}
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // A Receive on connection `id`: answered now when its condition is met
  // (or it does not wait), else parked until it is or its wait ends.
  // `attachment`: the Stream receiving (0: a Receive call, refused while a
  // Stream is attached).
  void Receive(absl::string_view id, const ReceiveSpec& spec, uint64_t token,
               Done<absl::StatusOr<ReceiveResult>> done,
               uint64_t attachment = 0);
  // The caller of Receive `token` went away: it ends Cancelled, taking
  // nothing.
  void Cancel(uint64_t token);
  // c's buffers or state changed: completes its parked Receive if that can
  // complete now.
  void Notify(Conn& c);
  // Completes the parked Receive of `c`, if any, with what it may take (or
  // Cancelled, taking nothing, when its caller is gone).
  void Complete(Conn& c);
  static bool CallerGone(const PendingReceive& pending);

 private:
  // Takes what a Receive may take now (data, end of stream or the closed
  // connection's status).
  absl::StatusOr<ReceiveResult> Take(Conn& c, const ReceiveSpec& spec);
  // True when a parked Receive on `c` can complete.
  bool Ready(const Conn& c, const ReceiveSpec& spec, size_t* scanned) const;
  // Stream transports: how many bytes a Receive with `spec` takes now; 0
  // while its condition (min_bytes, delimiter) is unmet and the peer has
  // not closed. `scanned` (optional) carries the delimiter search forward.
  size_t ReadyBytes(const Conn& c, const ReceiveSpec& spec,
                    size_t* scanned) const;
  // A second Receive on `c` (whose receive is parked, caller alive): waits
  // as c.receive->next, or fails at once when one waits already.
  void Contend(Conn& c, const ReceiveSpec& spec, uint64_t token,
               Done<absl::StatusOr<ReceiveResult>> done);
  void OnGiveWayTimer(uint64_t num, uint64_t token);
  void OnTimer(uint64_t num, uint64_t token);

  EngineImpl& engine_;
  // Parked and contending Receives by token -> their connection's number.
  absl::flat_hash_map<uint64_t, uint64_t> tokens_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_RECEIVER_H_
