// The header every UDP datagram of a Perf run carries (agent/perf.h sends
// it), and the receive side's accounting of it: what a discard server's UDP
// peer session counts for one sender (agent/udp_io.cc), as iperf3's server
// does: datagrams, highest sequence, lost, out of order, and RFC 3550
// interarrival jitter from the send timestamps.
//
// Wire layout (32 bytes, integers big-endian), then filler to the datagram
// size:
//
//   0        4     5       8          16         24             32
//   +--------+-----+-------+----------+----------+--------------+
//   | "SAPF" | ver | 0 0 0 |  run id  | sequence | send time ns |
//   +--------+-----+-------+----------+----------+--------------+
//
// ver is 1; sequence counts from 0 per sending socket; send time is the
// sender's CLOCK_REALTIME in ns (only differences between datagrams are
// used, so the two hosts' clocks need not agree).
//
//   if (auto h = ParsePerfHeader(data, n)) stats.Account(*h, absl::Now(), n);
//
// No lock of its own: PerfReceiveCounter lives in a connection's ConnExtra,
// under the engine lock.
#ifndef SOCKAGENT_AGENT_PERF_WIRE_H_
#define SOCKAGENT_AGENT_PERF_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "agent/engine_types.h"

namespace sockagent {

inline constexpr size_t kPerfHeaderBytes = 32;
inline constexpr uint8_t kPerfWireVersion = 1;

struct PerfHeader {
  uint64_t run_id = 0;
  uint64_t sequence = 0;
  int64_t sent_ns = 0;  // Sender's CLOCK_REALTIME.
};

// Writes the header into the first kPerfHeaderBytes of `out`.
void WritePerfHeader(const PerfHeader& h, char* out);

// The header of a datagram that starts with it (magic and version); nullopt
// for anything else (a few byte compares: cheap on every datagram).
std::optional<PerfHeader> ParsePerfHeader(const char* data, size_t n);

// One sender session's view on the receiving side. A header with another
// run id starts the counts afresh (a new run from the same address).
class PerfReceiveCounter {
 public:
  void Account(const PerfHeader& h, absl::Time arrival, size_t bytes);
  const PerfReceiveStats& stats() const { return stats_; }

 private:
  PerfReceiveStats stats_;
  bool any_ = false;
  int64_t last_transit_ns_ = 0;
  double jitter_ns_ = 0;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_PERF_WIRE_H_
