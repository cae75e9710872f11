// The connectivity matrix (`sockctl matrix`): what a probe's outcome is
// called, the expectation file, the probe payload and the tables, report and
// difference lines that show the result. No gRPC here: cmd_matrix.cc makes
// the calls and hands the outcomes to these functions.
//
// Expectation file (--expect), one rule per line:
//
//   # SRC  DST  TRANSPORT  RESULT
//   *      *    *          OK        (the default for cells no line names)
//   web-1  db-1 udp        TIMEOUT   (the firewall drops it)
//   *      db-1 tcp        FAIL      (any result but OK)
//   lb     *    *          *         (anything goes)
//
// SRC and DST are agent names or '*'; TRANSPORT is tcp, udp or '*'; RESULT
// is OK, REFUSED, TIMEOUT, UNREACHABLE, DNS, TLS, ERROR, FAIL or '*'. For each
// cell the last line that matches wins. '#' at the start of a word
// comments out the rest of the line.
//
//   absl::StatusOr<std::vector<Expectation>> rules = ParseExpectations(text);
//   ExpectedResult want = Expected(*rules, "web-1", "db-1", kUdp);
//   if (!want.Accepts(cell.result)) ...
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sockctl/output.pb.h"

namespace sockctl {

enum class ProbeTransport { kTcp, kUdp };

// "tcp", "udp".
std::string TransportWord(ProbeTransport transport);

// How one probe from a source agent to a destination agent ended.
enum class ProbeResult {
  kOk,           // The echo came back, byte for byte.
  kRefused,      // Connection refused.
  kTimeout,      // Connect timeout, or no echo within the wait.
  kUnreachable,  // Host or network unreachable, no route.
  kDns,          // The destination's name did not resolve.
  kTls,          // Connected, but the TLS handshake failed (--tls).
  kError,        // Anything else; the cell's message says what.
};

// "OK", "REFUSED", "TIMEOUT", "UNREACHABLE", "DNS", "TLS", "ERROR".
std::string ResultName(ProbeResult result);
// The reverse, ignoring case; nullopt for anything else.
std::optional<ProbeResult> ParseResultName(absl::string_view name);

// A TLS failure's class in a few words, from the agent's message (OpenSSL's
// words after "TLS handshake failed: "): "unknown CA", "expired
// certificate", "wrong name", "not TLS", "handshake timed out", ...; else
// OpenSSL's words themselves, at most 48 bytes.
std::string TlsFailureClass(absl::string_view message);

// What a cell may be. FAIL is any result but OK; '*' is any result.
struct ExpectedResult {
  enum class Kind { kExactly, kAnyFailure, kAnything };
  Kind kind = Kind::kExactly;
  ProbeResult result = ProbeResult::kOk;  // For kExactly.

  bool Accepts(ProbeResult observed) const;
  // "OK", "TIMEOUT", "FAIL", "*".
  std::string Name() const;
};

struct Expectation {
  std::string src;        // Agent name or "*".
  std::string dst;        // Agent name or "*".
  std::string transport;  // "tcp", "udp" or "*".
  ExpectedResult expected;
  int line = 0;  // 1-based, for messages.
};

// Every rule of an expectation file, in file order. Errors say "line N: ...".
absl::StatusOr<std::vector<Expectation>> ParseExpectations(
    absl::string_view text);

// A rule that names an agent not in `agents` is a typo that would silently
// never match: an error naming its line.
absl::Status CheckExpectationNames(const std::vector<Expectation>& rules,
                                   const std::vector<std::string>& agents);

// The last rule matching the cell, else OK.
ExpectedResult Expected(const std::vector<Expectation>& rules,
                        absl::string_view src, absl::string_view dst,
                        ProbeTransport transport);

// --target-host NAME=HOST words as a map. HOST may be an IPv6 address, with
// or without brackets. Errors: no '=', empty NAME or HOST, NAME twice.
absl::StatusOr<std::map<std::string, std::string>> ParseTargetHosts(
    const std::vector<std::string>& words);

// The bytes a probe sends and expects back:
// "sockctl-probe RUN SRC->DST TRANSPORT ATTEMPT\n".
std::string ProbePayload(absl::string_view run, absl::string_view src,
                         absl::string_view dst, ProbeTransport transport,
                         int attempt);

// One cell of the matrix: a probe from agent `src` to agent `dst` (indices
// into the agent names).
struct MatrixCell {
  size_t src = 0;
  size_t dst = 0;
  ProbeTransport transport = ProbeTransport::kTcp;
  ProbeResult result = ProbeResult::kError;
  absl::Duration rtt;   // For kOk: the source agent's round trip.
  std::string message;  // For anything but kOk: why, in words.
  int attempts = 0;     // Probes made for this cell.
};

// Round trip times at a glance: "87us", "0.4ms", "12ms", "1.3s".
std::string FormatRtt(absl::Duration rtt);

// "OK 0.4ms", "TIMEOUT", "TLS: unknown CA".
std::string CellText(const MatrixCell& cell);

// One transport's matrix as a table: a row per source, a column per
// destination, "-" for cells not probed (the diagonal without --self):
//
//   tcp
//   SRC\DST  a         b
//   a        -         OK 0.4ms
//   b        TIMEOUT   -
void PrintMatrixTable(std::ostream& out, const std::vector<std::string>& agents,
                      ProbeTransport transport,
                      const std::vector<MatrixCell>& cells);

// "a -> b tcp: expected OK, got TIMEOUT", then ": MESSAGE" when asked for
// and there is one.
std::string DifferenceLine(const std::vector<std::string>& agents,
                           const MatrixCell& cell,
                           const ExpectedResult& expected, bool with_message);

// The whole run as the message `-o json|yaml` prints
// (cli/sockctl/output.proto):
// {"run":RUN,"agents":[...],"transports":["tcp"],"asExpected":BOOL,
//  "cells":[{"src":..,"dst":..,"transport":"tcp","result":"OK",
//            "message":"","expected":"OK","attempts":1,
//            "rtt":"0.000412s"},...]}
// rtt is there only when OK. `expected` has one entry per cell, in order.
sockctl::output::MatrixReport MatrixReport(
    absl::string_view run, const std::vector<std::string>& agents,
    const std::vector<ProbeTransport>& transports,
    const std::vector<MatrixCell>& cells,
    const std::vector<ExpectedResult>& expected, bool as_expected);

}  // namespace sockctl
