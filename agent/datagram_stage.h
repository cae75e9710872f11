// DatagramStage: the UDP faults (drop, duplicate, delay; agent/faults.h)
// acting on one UDP connection, and the datagrams a delay holds back. The
// model only: it decides per datagram and keeps the held ones in due
// order; agent/fault_stage.h sends them and arms the connection's timer.
//
// Per datagram, every fault rolls once, in the order they were applied
// (so a fixed seed gives the same drops whatever the timing): `drop`
// with its probability, `duplicate` with its (two copies leave), `delay`
// holds it `delay` +- `jitter` (uniform). With jitter, a later datagram
// may leave before an earlier one, as on a real network; without it the
// order is kept.
//
// Bounds: the caller charges held datagrams to the connection's send
// buffer (send_buffer_bytes, kDatagramOverheadBytes each) and to the
// agent-wide total, so a long delay on a fast sender refuses Sends and
// drops echo replies instead of growing memory.
//
// Lock: none of its own; it lives in ConnFaults, under the engine lock.
//
//   DatagramStage::Verdict v = stage.Decide(now_ns);
//   if (v.copies == 0) count_drop(v.dropped_by); else if (v.due_ns) ...
#ifndef SOCKAGENT_AGENT_DATAGRAM_STAGE_H_
#define SOCKAGENT_AGENT_DATAGRAM_STAGE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/faults.h"

namespace sockagent {

class DatagramStage {
 public:
  struct Verdict {
    int copies = 1;      // 0: dropped; 2: duplicated.
    int64_t due_ns = 0;  // Held until then (steady clock); 0: send now.
    // The fault that dropped it (copies == 0); valid until the next Add
    // or Remove.
    const ActiveFault* dropped_by = nullptr;
  };

  // Replaces a fault with the same id (an update keeps its generator).
  void Add(ActiveFault fault);
  // False if it was not there.
  bool Remove(uint64_t fault_id);
  bool empty() const { return faults_.empty(); }
  const std::vector<ActiveFault>& faults() const { return faults_; }
  bool has_delay() const;

  // The fate of the next datagram sent at now_ns.
  Verdict Decide(int64_t now_ns);

  // Held datagrams: kept in due order (ties: arrival order).
  void Hold(int64_t due_ns, std::string data);
  // Takes the held datagrams due at now_ns (every one: `all`), earliest
  // due first.
  std::vector<std::string> TakeDue(int64_t now_ns, bool all);
  int64_t next_due_ns() const;  // 0: nothing held.
  size_t held() const { return held_.size(); }
  uint64_t held_bytes() const { return held_bytes_; }

 private:
  std::vector<ActiveFault> faults_;
  std::multimap<int64_t, std::string> held_;
  uint64_t held_bytes_ = 0;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_DATAGRAM_STAGE_H_
