// PerfRunner: the sending side of a bandwidth run (`sockctl perf`, the Perf
// RPC; iperf3's client), on the engine's loop. TCP: `parallel` connections
// each write one shared, reused 128 KiB buffer as fast as the socket takes
// it, until the duration or the byte count is reached; then each reads
// TCP_INFO (RTT, retransmits, cwnd), sends FIN and waits (at most
// `drain_wait`) for the receiver to close, so that every byte written has
// arrived when the call answers. UDP: `parallel` connected sockets each
// send datagrams carrying agent/perf_wire.h's header (run id, sequence,
// send time) at rate / parallel, paced by one timer per socket: whatever
// is due is sent in a burst (at most 256 datagrams a turn), and the timer
// waits for the next datagram's due time, at least 1 ms.
//
//   PerfRunner perf(io, {.policy = &policy, .resolver = &pool});
//   perf.Start(spec, [](absl::StatusOr<PerfReport> r) {
//     ...  // On the loop thread, once.
//   });
//
// Owns: the calls in progress and their sockets and timers. Like the
// Prober's, its sockets are not the engine's connections: not listed, no
// events, not counted in max_connections; a call holds at most
// `max_parallel` sockets and at most `max_calls` calls run at once. No
// thread per stream: writes run in turns on the loop (16 writes of 128 KiB,
// or 256 datagrams, then the loop runs other work before the next turn),
// so the agent's other sockets keep being served while a run saturates a
// link (they share the one loop thread's CPU).
//
// Threads: Start and Cancel from any thread (they post to the loop);
// everything else, and every handler, on the loop thread, touching only
// the runner's own state: no engine lock. Shutdown from the loop thread,
// or from any thread once the loop no longer runs.
//
// Bounds (INVALID_ARGUMENT naming the request field): duration at most
// `max_duration` (60 s), bytes at most `max_bytes` (1 TiB), parallel at most
// `max_parallel` (16), UDP rate at most `max_udp_rate_bps` (10 Gbit/s),
// datagrams of kPerfHeaderBytes to 65507 bytes. A call beyond `max_calls`
// (2) is RESOURCE_EXHAUSTED. The destination policy applies to the
// resolved target (PERMISSION_DENIED). A failed connect fails the call
// (UNAVAILABLE / DEADLINE_EXCEEDED with the errno's words); a stream that
// fails later ends early and says why in its report. The call's deadline
// ends the writing at the latest; Cancel closes everything at once.
#ifndef SOCKAGENT_AGENT_PERF_H_
#define SOCKAGENT_AGENT_PERF_H_

#include <asio.hpp>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/policy.h"
#include "agent/resolver.h"

namespace sockagent {

struct PerfOptions {
  const Policy* policy = nullptr;    // Not owned; null: allow all.
  ResolverPool* resolver = nullptr;  // Not owned; null: numeric only.
  size_t max_calls = 2;
  uint32_t max_parallel = 16;
  absl::Duration max_duration = absl::Seconds(60);
  uint64_t max_bytes = uint64_t{1} << 40;
  uint64_t max_udp_rate_bps = 10'000'000'000;
  absl::Duration connect_timeout = absl::Seconds(10);
  // After the last write: how long a TCP stream waits for the receiver to
  // close after its FIN.
  absl::Duration drain_wait = absl::Seconds(5);
};

// Defaults of a PerfSpec's zero fields.
inline constexpr absl::Duration kPerfDefaultDuration = absl::Seconds(5);
inline constexpr uint64_t kPerfDefaultUdpRateBps = 1'000'000;
inline constexpr uint32_t kPerfDefaultDatagramBytes = 1460;

class PerfRunner {
 public:
  // `io` is the loop's context; it and the options' pointees outlive this.
  PerfRunner(asio::io_context& io, PerfOptions options);
  ~PerfRunner();

  PerfRunner(const PerfRunner&) = delete;
  PerfRunner& operator=(const PerfRunner&) = delete;

  // Checks `spec` (on the calling thread: a bad one is answered at once,
  // through `done`) and starts the run on the loop. Returns a token for
  // Cancel. `done` runs exactly once, on the loop thread (or in Shutdown).
  uint64_t Start(PerfSpec spec, Done<absl::StatusOr<PerfReport>> done);
  // Ends the run at once (sockets closed, `done` gets CANCELLED). Unknown or
  // finished tokens are ignored. Any thread.
  void Cancel(uint64_t token);
  // Ends every run with UNAVAILABLE "agent shutting down".
  void Shutdown();

  struct Call;   // perf.cc
  struct Alive;  // perf.cc

 private:
  void Begin(std::shared_ptr<Call> call);
  void Resolved(const std::shared_ptr<Call>& call,
                absl::StatusOr<std::vector<AddressEntry>> result);
  void Connect(const std::shared_ptr<Call>& call, const asio::ip::address& ip,
               uint16_t port);
  void Connected(const std::shared_ptr<Call>& call, size_t i,
                 const std::error_code& ec);
  void StartSending(const std::shared_ptr<Call>& call);
  void TimeUp(const std::shared_ptr<Call>& call);
  void WriteTcp(const std::shared_ptr<Call>& call, size_t i);
  void EndTcp(const std::shared_ptr<Call>& call, size_t i);
  void Drain(const std::shared_ptr<Call>& call, size_t i);
  void SendUdp(const std::shared_ptr<Call>& call, size_t i);
  void EndStream(const std::shared_ptr<Call>& call, size_t i);
  void Finish(uint64_t token, absl::Status status);

  asio::io_context& io_;
  const PerfOptions options_;
  std::atomic<size_t> calls_{0};  // Admitted and not yet finished.
  std::atomic<uint64_t> next_token_{1};
  // Loop thread only.
  absl::flat_hash_map<uint64_t, std::shared_ptr<Call>> running_;
  std::shared_ptr<Alive> alive_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_PERF_H_
