// `sockctl perf` without gRPC: its flags' quantities (rates, byte counts,
// pairs), the plan of a pairs run and its time budget, the sender's answer
// and the receiver's connections turned into one summary (cli/sockctl/
// output.proto PerfRun), and the tables that print it. cmd_perf.cc makes
// the calls.
//
//   absl::StatusOr<uint64_t> rate = ParseRate("--rate", "100M");  // 1e8
//   sockctl::output::PerfRun run = Summarize(response, receiver_conns, udp);
//   PrintPerfRun(std::cout, run);
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sockctl/output.pb.h"

namespace sockctl {

class Fleet;

// `sockctl perf`'s flags, as given (cmd_perf.cc checks them).
struct PerfArgs {
  std::string from;
  std::string to;
  bool tcp = false;
  bool udp = false;
  std::string time;  // "": 5s, or 2s for pairs.
  uint32_t parallel = 1;
  std::string bytes;
  std::string rate = "1M";
  uint32_t length = 0;
  uint32_t port = 0;
  std::vector<std::string> target_hosts;
  std::string pairs;
  bool all_pairs = false;
  std::string budget;
  uint32_t concurrent = 1;
  bool verbose = false;
};

// Runs `sockctl perf` (also `matrix --bandwidth`): plans, runs every pair,
// prints, cleans up; returns the exit code.
int RunPerf(Fleet& fleet, const PerfArgs& args);

// A bit rate: a number with an optional k, M, G or T (powers of 1000, as
// iperf3's -b), and an optional "bit/s" or "bps": "100M", "1.5G", "800k".
absl::StatusOr<uint64_t> ParseRate(absl::string_view flag,
                                   absl::string_view text);
// A byte count: a number with an optional K, M, G or T (powers of 1024, as
// iperf3's -n) and an optional "B": "10M", "1G", "4096".
absl::StatusOr<uint64_t> ParseByteCount(absl::string_view flag,
                                        absl::string_view text);

// "9.41 Gbit/s", "812 Mbit/s", "96.0 kbit/s".
std::string FormatBitRate(double bits_per_second);

// bytes * 8 / duration; 0 for no time.
double BitsPerSecond(uint64_t bytes, absl::Duration duration);

// The sender's answer and the receiving server's connections (all of them:
// those of other runs are skipped by run id for UDP; a TCP discard server
// of one run has only its connections) as one summary. `from`, `to`,
// `run`, `target` and `transport` are filled by the caller.
sockctl::output::PerfRun Summarize(
    const sockagent::v1::PerfResponse& response,
    const std::vector<sockagent::v1::Connection>& receiver, bool udp);

// The iperf3-like summary:
//   perf a -> b tcp 127.0.0.1:40123, 1 stream, run 1f2e3d4c
//   ROLE      BYTES         SECONDS  BITRATE        RETR  RTT     CWND
//   sender    5.5GiB  5.00     9.41 Gbit/s  0     45us  2.5MiB
//   receiver  5.5GiB  5.01     9.40 Gbit/s
// (byte counts as everywhere in sockctl: cli/output.h FormatByteCount).
// UDP: ROLE BYTES SECONDS BITRATE DATAGRAMS LOST JITTER OUT-OF-ORDER.
void PrintPerfRun(std::ostream& out, const sockctl::output::PerfRun& run);

// Agent index pairs (SRC, DST) of a pairs run, in order: "a:b,b:c" (agent
// names), or every ordered pair of different agents.
absl::StatusOr<std::vector<std::pair<size_t, size_t>>> ParsePairs(
    absl::string_view text, const std::vector<std::string>& agents);
std::vector<std::pair<size_t, size_t>> AllPairs(size_t agents);

// Above this many agents, --all-pairs needs --budget: N * (N - 1) runs one
// after another grow fast (128 agents x 5 s is 22.6 hours).
inline constexpr size_t kAllPairsWithoutBudget = 8;
// The shortest run a budget may leave each pair.
inline constexpr absl::Duration kShortestPairRun = absl::Milliseconds(200);
// A pair's time beyond its duration (server start, connects, drain, the
// receiver's figures), counted against --budget.
inline constexpr absl::Duration kPairOverhead = absl::Milliseconds(300);

// Each pair's duration for `pairs` runs, `concurrent` at a time, given the
// requested per-pair `duration` and an optional total `budget` (0: none):
// the duration, shortened to fit the budget. Errors say how long the whole
// run would take and what to give instead: a budget that leaves a pair
// less than kShortestPairRun, or --all-pairs over kAllPairsWithoutBudget
// agents without one.
absl::StatusOr<absl::Duration> PairDuration(size_t pairs, size_t concurrent,
                                            absl::Duration duration,
                                            absl::Duration budget,
                                            bool all_pairs, size_t agents);

// The N x N throughput table of a pairs run: a row per sender, a column per
// receiver, the receiver's bit rate ("9.41G", "812M"), ERR for a failed
// run, "-" for pairs not run.
//   tcp bandwidth (receiver, bit/s)
//   SRC\DST  a      b
//   a        -      9.41G
//   b        9.38G  -
void PrintPerfMatrix(std::ostream& out, const sockctl::output::PerfMatrix& m);

}  // namespace sockctl
