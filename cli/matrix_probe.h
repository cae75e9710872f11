// The probes of `sockctl matrix` (cmd_matrix.cc): one round asks every
// source agent at once, with one asynchronous Probe call each (no thread per
// call or per probe), to dial the other agents' echo servers; the agents do
// the probing on their own loops and answer each cell's class from the errno
// or resolver code. A source that cannot be reached is asked again with
// backoff before its cells say so. Also how an echo server is dialled (its
// port, where the families got different ones).
//
//   ProbeRound round(run, fleet);
//   round.Run(cells, which, target_of, started + deadline, reached);
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/fleet.h"
#include "cli/interrupt.h"
#include "cli/matrix.h"
#include "cli/matrix_ca.h"

namespace sockctl {

sockagent::v1::Transport ToApi(ProbeTransport transport);

// The matrix's class of an agent's probe outcome.
ProbeResult ResultFromApi(sockagent::v1::ProbeResult result);

// One agent's echo server for one transport, as other agents dial it.
struct EchoServer {
  bool started = false;
  uint32_t port = 0;
  std::string error;  // Why it did not start.
};

// The port to dial on a server bound to several addresses: binding "" with
// port 0 normally gives both families one port; if they differ, the port of
// the family the dial host is written in (a name: IPv4).
EchoServer DialTarget(const sockagent::v1::Server& server,
                      const std::string& dial_host);

// What every probe of one matrix run shares; outlives the rounds.
struct ProbeRun {
  std::string run;                      // The run id, in every payload.
  std::vector<std::string> agents;      // Names, in fleet order.
  std::vector<std::string> dial_hosts;  // How other agents reach each.
  // Each probe's whole time on its source agent: connect, TLS handshake,
  // the echo.
  absl::Duration per_probe;
  uint32_t concurrency = 64;  // Probes in flight on each source agent.
  const InterruptFlag* interrupt = nullptr;
  // --tls: the run CA's certificate, the only one TCP probes trust (empty:
  // plain TCP). --mtls: each source agent's client certificate, by agent
  // index (empty: none).
  std::string tls_ca_pem;
  std::vector<IssuedCert> client_certs;
  bool verbose = false;  // Retries on stderr.
};

// Bounds of one source's Probe calls.
inline constexpr size_t kMaxTargetsPerCall = 1024;  // The agent's bound.
// Attempts at a call that could not reach its agent (or found it busy):
// 1 + retries, waiting 100 ms, 200 ms, 400 ms ... (at most 1.6 s) between.
inline constexpr int kMaxCallAttempts = 5;

// The destination's echo server for a cell.
using TargetOf = std::function<const EchoServer&(const MatrixCell&)>;

// Probes cells[i] for every i in `which`, all source agents at once, and
// returns when every cell has its result: counts each cell's attempt and
// sets result, rtt (the agent's: first payload byte written to the last
// echo byte read) and message. Nothing outlives `cut`: calls still running
// then are answered by their agents with TIMEOUT for the probes in flight
// (the agents end them just before it), and a retry that would not finish
// by then is not made. An interrupt cancels every call at once (their
// agents close the probes' sockets). `reached[src]` becomes true for every
// source that answered a call, even with an error.
void ProbeRound(const ProbeRun& run, const Fleet& fleet,
                const TargetOf& target_of, std::vector<MatrixCell>& cells,
                const std::vector<size_t>& which, absl::Time cut,
                std::vector<std::atomic<bool>>& reached);

}  // namespace sockctl
