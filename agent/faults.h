// Faults: network trouble the agent applies to its own connections
// (toxiproxy's toxics, on any connection the agent owns). This file is the
// model: the fault types and their parameters, validation (naming the
// field), the table of faults an agent holds (FaultTable, bounded), the
// toxicity roll, and the per-connection SEND stage (SendStage): the pure
// decision of how many queued bytes may go to the socket now, when to look
// again, and whether to cut the connection. It owns no socket and no timer:
// agent/fault_stage.h glues it to the engine (one Asio timer per faulted
// connection, armed at SendStage's wake time).
//
// Lock: none of its own. Everything runs under the engine lock (the engine
// owns the FaultTable and every connection's SendStage).
//
// Where a fault acts: between "bytes queued for this socket" (Send, Stream,
// echo, greeting, a proxy's relay: everything that reaches
// EngineImpl::Flush) and the socket write. Delayed bytes stay in the
// connection's send queue, so they count against send_buffer_bytes and
// max_total_buffered_bytes: a long latency on a fast stream fills the send
// queue and pauses reading (echo) or refuses Send (RESOURCE_EXHAUSTED), it
// never grows memory. Bytes leave in order whatever the jitter. Faults with
// direction RECEIVED run the same SendStage model between the socket read
// and the behaviour (fault_stage.h's RECEIVE stage): there the held bytes
// count against recv_buffer_bytes, and reading pauses at that bound.
//
//   FaultSpec spec;
//   spec.name = "slow"; spec.type = FaultType::kLatency;
//   spec.latency = absl::Milliseconds(20); spec.target.server_id = "srv-1";
//   if (absl::Status s = ValidateFaultSpec(spec); !s.ok()) return s;
//   SendStage stage; stage.Add(ActiveFault::From(spec, conn_num), now_ns);
//   SendStage::Decision d = stage.Decide(queued_end, now_ns);
#ifndef SOCKAGENT_AGENT_FAULTS_H_
#define SOCKAGENT_AGENT_FAULTS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/labels.h"

namespace sockagent {

// Stream faults (TCP, UNIX) act on bytes; datagram faults (UDP) on whole
// datagrams. The values match the proto's oneof field numbers' order.
enum class FaultType {
  kLatency,    // latency (+ jitter): each byte leaves `latency` after queued.
  kBandwidth,  // rate_bytes_per_second: a token bucket (100 ms of burst).
  kSlicer,     // average_size +- size_variation bytes per write, `delay`
               // between them.
  kLimitData,  // bytes: after exactly this many bytes written, the rest is
               // discarded and the connection closed (FIN).
  kResetPeer,  // timeout: RST `timeout` after the fault applied.
  kTimeout,    // timeout: nothing is written (queued bytes are discarded,
               // as toxiproxy drops them); close `timeout` after the fault
               // applied, or never (0: the blackhole).
  kSlowClose,  // delay: the FIN leaves `delay` after it was due.
  kDrop,       // UDP: probability of dropping each datagram.
  kDuplicate,  // UDP: probability of sending a datagram twice.
  kDelay,      // UDP: delay (+ jitter) per datagram.
};

const char* FaultTypeName(FaultType type);  // "latency", "limit_data", ...
std::optional<FaultType> FaultTypeFromName(absl::string_view name);
bool IsDatagramFault(FaultType type);

// Which way the bytes travel. SENT: bytes the agent writes to this
// connection's socket (the SEND stage). UPSTREAM / DOWNSTREAM are the
// proxy words: toward the upstream is the SEND stage of the connections
// the agent opened (a proxy's upstream half, OpenClient), toward the
// downstream the SEND stage of accepted connections (a proxy's accepted
// half, a server's clients). So a fault with UPSTREAM acts only on opened
// connections and DOWNSTREAM only on accepted ones (and UDP peer
// sessions); SENT acts on any. RECEIVED acts on the bytes the agent reads
// from any stream connection (the RECEIVE stage, between the socket read
// and the behaviour: Receive, echo, a proxy's relay), and on the datagrams
// it receives on any UDP client or peer session (before the behaviour).
enum class FaultDirection { kSent, kReceived, kUpstream, kDownstream };
const char* FaultDirectionName(FaultDirection d);

// Exactly one of the three. A server: its connections, open now and
// accepted later. A connection: that one. A label selector: every
// connection whose labels match, now and later.
struct FaultTarget {
  std::string server_id;
  std::string connection_id;
  Labels selector;
};

struct FaultSpec {
  std::string name;  // DNS label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63.
  FaultType type = FaultType::kLatency;
  FaultDirection direction = FaultDirection::kSent;
  double toxicity = 1.0;  // Probability a connection gets it, [0, 1].
  uint64_t seed = 0;      // 0: the agent picks one (shown in listings).
  FaultTarget target;
  Labels labels;  // The fault's own labels (RemoveFaults by selector).
  // Parameters; which ones count depends on `type`.
  absl::Duration latency = absl::ZeroDuration();
  absl::Duration jitter = absl::ZeroDuration();
  uint64_t rate_bytes_per_second = 0;
  uint64_t average_size = 0;
  uint64_t size_variation = 0;
  absl::Duration delay = absl::ZeroDuration();
  uint64_t bytes = 0;
  absl::Duration timeout = absl::ZeroDuration();
  double probability = 0;
};

// Bounds (InvalidArgument beyond them, naming the field).
inline constexpr size_t kMaxFaults = 256;  // Per agent: ResourceExhausted.
inline constexpr absl::Duration kMaxFaultDuration = absl::Hours(1);
inline constexpr uint64_t kMaxFaultRate = uint64_t{1} << 40;  // 1 TiB/s.
inline constexpr uint64_t kMaxSliceBytes = 1 << 20;
inline constexpr uint64_t kMaxLimitDataBytes = uint64_t{1} << 50;
// A stage keeps at most this many arrival marks (latency); beyond, new
// bytes join the newest mark and leave with it (later, never earlier).
inline constexpr size_t kMaxLatencyMarks = 4096;

// Checks everything but the target's existence (the engine does that):
// field names in messages are the API's ("fault.latency.jitter must be
// <= 1h", "fault.name ...").
absl::Status ValidateFaultSpec(const FaultSpec& spec);

// What the listings show of a fault.
struct FaultInfo {
  FaultSpec spec;  // seed filled in when the caller left it 0.
  absl::Time created_at;
  absl::Time updated_at;
  uint64_t connections = 0;  // Acting on this many open connections now.
  uint64_t applied = 0;      // Connections it was ever applied to.
  uint64_t skipped = 0;      // Connections the toxicity roll spared.
};

// The toxicity roll for one connection: deterministic in (seed, name,
// connection number), so a test with a fixed seed gets the same answer.
bool RollToxicity(double toxicity, uint64_t seed, absl::string_view name,
                  uint64_t conn_num);

// A small deterministic generator (splitmix64): jitter, slice sizes, UDP
// drops. Seeded per connection and fault.
class FaultRandom {
 public:
  explicit FaultRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  double Uniform();  // [0, 1)
  // Uniform in [-spread, spread] (ns or bytes).
  int64_t Spread(int64_t spread);

 private:
  uint64_t state_;
};

uint64_t MixSeed(uint64_t seed, absl::string_view name, uint64_t conn_num);

// One fault acting on one connection's SEND stage, with its state.
struct ActiveFault {
  uint64_t fault_id = 0;  // FaultTable's number: stable across updates.
  FaultSpec spec;
  int64_t applied_ns = 0;  // Steady clock.
  FaultRandom random{0};
  // kLimitData: bytes written since applied. kSlicer: bytes left of the
  // current slice and when the next may start.
  uint64_t written = 0;
  uint64_t slice_left = 0;
  int64_t next_slice_ns = 0;
  bool acted = false;  // Its close or reset was decided (once only).
  // kBandwidth: tokens (bytes) at tokens_ns.
  double tokens = 0;
  int64_t tokens_ns = 0;
};

// The SEND stage of one connection. Offsets count every byte ever queued
// for the socket since the stage began (`written` + bytes still queued).
class SendStage {
 public:
  enum class Action { kNone, kClose, kReset };
  struct Decision {
    uint64_t allowed = 0;  // Bytes that may be written now.
    int64_t wake_ns = 0;   // Look again then (0: no need: bytes or time).
    Action action = Action::kNone;
    bool discard = false;  // Discard what is queued (timeout, limit_data).
    std::string why;       // Close detail for an action.
  };

  // `queued_end`: offset after the last queued byte, so marks can start at
  // the right place. Replaces a fault with the same id (update: state kept
  // where the type is the same).
  void Add(ActiveFault fault, uint64_t queued_end, int64_t now_ns);
  // False if it was not there. Delayed bytes are released by the next
  // Decide (nothing lost).
  bool Remove(uint64_t fault_id);
  bool empty() const { return faults_.empty(); }
  const std::vector<ActiveFault>& faults() const { return faults_; }

  // Bytes newly queued up to `queued_end` arrived now (latency marks).
  void Observe(uint64_t queued_end, int64_t now_ns);
  // What may go now, given the queue ends at `queued_end`.
  Decision Decide(uint64_t queued_end, int64_t now_ns);
  // `n` bytes were written at now_ns.
  void Wrote(uint64_t n, int64_t now_ns);
  // The FIN is due: may it leave now? Otherwise *wake_ns says when.
  bool FinAllowed(int64_t now_ns, int64_t* wake_ns);
  uint64_t written() const { return written_; }
  size_t marks() const { return marks_.size(); }

 private:
  struct Mark {
    uint64_t end = 0;        // Bytes before this offset ...
    int64_t release_ns = 0;  // ... may leave from then on.
  };
  std::vector<ActiveFault> faults_;
  std::deque<Mark> marks_;
  uint64_t observed_ = 0;  // Offset up to which arrivals are recorded.
  uint64_t written_ = 0;
  int64_t fin_due_ns_ = 0;  // When the FIN was first due (slow_close).
};

// The faults an agent holds, by name; bounded by kMaxFaults. Plain data:
// the engine decides which connections each one acts on.
class FaultTable {
 public:
  // AlreadyExists for a taken name, ResourceExhausted at kMaxFaults.
  absl::StatusOr<const FaultInfo*> Add(FaultSpec spec, absl::Time now,
                                       uint64_t* id);
  // NotFound naming the fault. The target and name stay; everything else
  // is replaced.
  absl::StatusOr<const FaultInfo*> Update(const FaultSpec& spec, absl::Time now,
                                          uint64_t* id);
  // Removes by name (NotFound if unknown), or every fault whose labels
  // match `selector`, or all (`all`). Returns the ids removed.
  absl::StatusOr<std::vector<uint64_t>> Remove(absl::string_view name,
                                               const Labels& selector,
                                               bool all);
  FaultInfo* Find(uint64_t id);
  const std::map<uint64_t, FaultInfo>& faults() const { return faults_; }
  std::map<uint64_t, FaultInfo>& faults() { return faults_; }
  size_t size() const { return faults_.size(); }

 private:
  uint64_t next_id_ = 1;
  uint64_t next_seed_ = 0x5eed;
  std::map<uint64_t, FaultInfo> faults_;  // By id (creation order).
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_FAULTS_H_
