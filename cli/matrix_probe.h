// One probe of `sockctl matrix` (cmd_matrix.cc): from a source agent, open a
// connection to another agent's echo server, send the payload, wait for the
// echo, close; the cell says what came of it. Also how an echo server is
// dialled (its port, and family where the families got different ports).
// Safe to call from several threads at once, one cell each.
//
//   const ProbeRun run{run_id, kRunLabel, agents, dial_hosts, per_probe,
//                      &interrupt};
//   if (ProbeCell(run, fleet.client(cell.src), target, cell)) reached = true;
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/client.h"
#include "cli/interrupt.h"
#include "cli/matrix.h"
#include "cli/matrix_ca.h"

namespace sockctl {

sockagent::v1::Transport ToApi(ProbeTransport transport);

// One agent's echo server for one transport, as other agents dial it.
struct EchoServer {
  bool started = false;
  uint32_t port = 0;
  sockagent::v1::Family family = sockagent::v1::FAMILY_UNSPECIFIED;
  std::string error;  // Why it did not start.
};

// The port to dial on a server bound to several addresses. Binding "" with
// port 0 normally gives both families one port; if they differ, pick the
// family the dial host is written in (a name: IPv4) and pin it.
EchoServer DialTarget(const sockagent::v1::Server& server,
                      const std::string& dial_host);

// What every probe of one matrix run shares; outlives the probes.
struct ProbeRun {
  std::string run;                      // The run id: label value, payload.
  const char* label = nullptr;          // The label key (sockctl-matrix).
  std::vector<std::string> agents;      // Names, in fleet order.
  std::vector<std::string> dial_hosts;  // How other agents reach each.
  absl::Duration per_probe;             // Connect and echo timeout each.
  const InterruptFlag* interrupt = nullptr;
  // --tls: the run CA's certificate, the only one TCP probes trust (empty:
  // plain TCP); the handshake may take per_probe too. --mtls: each source
  // agent's client certificate, by agent index (empty: none).
  std::string tls_ca_pem;
  std::vector<IssuedCert> client_certs;
};

// Probes `cell` once from `source` to `target` (cell.dst's echo server for
// cell.transport): counts the attempt and sets result, rtt and message.
// Returns whether `source` was reached (its OpenClient was answered, even
// with an error), so that the run knows which agents to clean up.
bool ProbeCell(const ProbeRun& run, AgentClient& source,
               const EchoServer& target, MatrixCell& cell);

}  // namespace sockctl
