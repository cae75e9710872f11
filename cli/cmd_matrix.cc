// `sockctl matrix`: the connectivity matrix of a fleet. Starts an echo
// server on every agent, has every agent probe every other one's (one Probe
// call per source agent, all at once: matrix_probe.h), and prints who
// reaches whom (and the round trip) as one table per transport. With
// --expect it re-probes the cells that differ from the expectation until
// they match or --deadline passes. Everything it creates carries the label
// sockctl-matrix=<run id>, and is stopped by that label on every agent on
// every way out, SIGINT and SIGTERM included.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/interrupt.h"
#include "cli/inventory.h"
#include "cli/labelled_run.h"
#include "cli/matrix.h"
#include "cli/matrix_ca.h"
#include "cli/matrix_probe.h"
#include "cli/output.h"
#include "cli/parallel.h"
#include "cli/perf.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::StartServerRequest;
using sockagent::v1::StartServerResponse;
using sockagent::v1::StopServerRequest;
using sockagent::v1::StopServerResponse;

constexpr char kRunLabel[] = "sockctl-matrix";
// Between two rounds of re-probing with --expect.
constexpr absl::Duration kRoundInterval = absl::Seconds(1);
// The agents' bound on a probe's timeout (Probe's timeout field).
constexpr absl::Duration kMaxPerProbe = absl::Seconds(60);

struct MatrixArgs {
  bool tcp = false;
  bool udp = false;
  uint32_t port = 0;
  std::string bind_host;  // "": every address, dual stack.
  std::vector<std::string> target_hosts;
  std::string per_probe = "1s";
  std::string expect_file;
  std::string deadline = "30s";
  bool self = false;
  uint32_t parallel = 64;
  bool verbose = false;
  bool tls = false;
  bool mtls = false;
  // --bandwidth: `sockctl perf` over pairs instead of probes.
  bool bandwidth = false;
  std::string pairs;  // "": every ordered pair.
  std::string budget;
  std::string time;
  std::string rate = "1M";
  uint32_t concurrent = 1;
};

// Everything checked before the first call.
struct MatrixPlan {
  std::vector<std::string> agents;      // Names, in fleet order.
  std::vector<std::string> dial_hosts;  // How other agents reach each.
  std::vector<ProbeTransport> transports;
  std::vector<Expectation> rules;
  bool have_rules = false;
  absl::Duration per_probe;
  absl::Duration deadline;
  bool tls = false;  // --tls or --mtls.
  bool mtls = false;
};

absl::StatusOr<MatrixPlan> MakePlan(const Fleet& fleet,
                                    const MatrixArgs& args) {
  MatrixPlan plan;
  if (args.tcp || !args.udp) plan.transports.push_back(ProbeTransport::kTcp);
  if (args.udp) plan.transports.push_back(ProbeTransport::kUdp);

  absl::StatusOr<absl::Duration> per_probe =
      ParseDurationFlag("--timeout-per-probe", args.per_probe);
  if (!per_probe.ok()) return per_probe.status();
  if (*per_probe <= absl::ZeroDuration() || *per_probe > kMaxPerProbe) {
    return absl::InvalidArgumentError(
        "--timeout-per-probe must be positive and at most 60s (the agents' "
        "bound)");
  }
  plan.per_probe = *per_probe;
  absl::StatusOr<absl::Duration> deadline =
      ParseDurationFlag("--deadline", args.deadline);
  if (!deadline.ok()) return deadline.status();
  if (*deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--deadline must be positive");
  }
  plan.deadline = *deadline;
  plan.tls = args.tls || args.mtls;
  plan.mtls = args.mtls;
  if (plan.tls && args.udp) {
    return absl::InvalidArgumentError(
        "--tls/--mtls: UDP has no TLS here (no DTLS); drop --udp, or run the "
        "UDP matrix on its own");
  }

  if (fleet.size() < 2 && !args.self) {
    return absl::InvalidArgumentError(
        "matrix needs at least two agents (repeat --agent, or --inventory), "
        "or --self to probe one agent from itself");
  }
  for (size_t i = 0; i < fleet.size(); ++i)
    plan.agents.push_back(fleet.name(i));

  absl::StatusOr<std::map<std::string, std::string>> targets =
      ParseTargetHosts(args.target_hosts);
  if (!targets.ok()) return targets.status();
  for (const auto& [name, host] : *targets) {
    if (std::find(plan.agents.begin(), plan.agents.end(), name) ==
        plan.agents.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--target-host: no agent is named '", name, "'"));
    }
  }
  for (size_t i = 0; i < fleet.size(); ++i) {
    auto it = targets->find(fleet.name(i));
    if (it != targets->end()) {
      plan.dial_hosts.push_back(it->second);
      continue;
    }
    absl::StatusOr<std::string> host =
        AgentHost(fleet.client(i).options().agent);
    if (!host.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("agent ", fleet.name(i), ": ", host.status().message(),
                       "; give --target-host ", fleet.name(i), "=HOST"));
    }
    plan.dial_hosts.push_back(*std::move(host));
  }

  if (!args.expect_file.empty()) {
    absl::StatusOr<std::string> text = ReadConfigFile(args.expect_file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --expect: ", text.status().message()));
    }
    absl::StatusOr<std::vector<Expectation>> rules = ParseExpectations(*text);
    absl::Status names = rules.ok() ? CheckExpectationNames(*rules, plan.agents)
                                    : rules.status();
    if (!names.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --expect '", args.expect_file, "': ", names.message()));
    }
    plan.rules = *std::move(rules);
    plan.have_rules = true;
  }
  return plan;
}

class MatrixRun final {
 public:
  MatrixRun(const Fleet& fleet, const MatrixArgs& args, MatrixPlan plan,
            const InterruptFlag& interrupt)
      : fleet_(fleet),
        args_(args),
        plan_(std::move(plan)),
        interrupt_(interrupt),
        run_(NewRunId()),
        reached_(fleet.size()) {
    probe_.run = run_;
    probe_.agents = plan_.agents;
    probe_.dial_hosts = plan_.dial_hosts;
    probe_.per_probe = plan_.per_probe;
    probe_.concurrency = std::max<uint32_t>(args_.parallel, 1);
    probe_.interrupt = &interrupt_;
    probe_.verbose = args_.verbose;
    for (ProbeTransport t : plan_.transports) {
      for (size_t src = 0; src < fleet_.size(); ++src) {
        for (size_t dst = 0; dst < fleet_.size(); ++dst) {
          if (src == dst && !args_.self) continue;
          MatrixCell cell;
          cell.src = src;
          cell.dst = dst;
          cell.transport = t;
          cells_.push_back(cell);
          expected_.push_back(
              Expected(plan_.rules, plan_.agents[src], plan_.agents[dst], t));
        }
      }
    }
  }

  // Starts the echo servers, probes, re-probes, prints; returns the exit
  // code. Cleanup() must follow whatever this returns.
  int Run() {
    if (args_.verbose) {
      std::fprintf(stderr, "sockctl: matrix run %s: %zu agents, %zu cells\n",
                   run_.c_str(), fleet_.size(), cells_.size());
    }
    if (plan_.tls) {
      if (const int rc = IssueCertificates(); rc != kExitOk) return rc;
    }
    const int setup_rc = StartServers();
    if (interrupt_.raised()) return kExitInterrupted;

    const absl::Time started = absl::Now();
    // Nothing runs past the deadline: calls in flight then answer what
    // their probes came to (TIMEOUT for those still running).
    const absl::Time cut = started + plan_.deadline;
    absl::Time round_started = started;
    std::vector<size_t> all(cells_.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    ProbeCells(all, cut);
    std::vector<size_t> differing = Differing();
    for (int round = 2; plan_.have_rules && !differing.empty(); ++round) {
      // A round starts a second after the previous one started (at once if
      // that one took longer), and none starts after the deadline.
      const absl::Time next = round_started + kRoundInterval;
      if (next >= cut) break;
      if (interrupt_.WaitFor(next - absl::Now())) break;
      round_started = absl::Now();
      if (args_.verbose) {
        std::fprintf(stderr, "sockctl: round %d: re-probing %zu cells\n", round,
                     differing.size());
      }
      ProbeCells(differing, cut);
      differing = Differing();
    }
    if (args_.verbose) {
      std::fprintf(stderr, "sockctl: matrix run %s: probing took %.3fs\n",
                   run_.c_str(), absl::ToDoubleSeconds(absl::Now() - started));
    }
    if (interrupt_.raised()) return kExitInterrupted;

    Print(differing.empty());
    for (size_t i : differing) {
      std::fprintf(
          stderr, "sockctl: %s\n",
          DifferenceLine(plan_.agents, cells_[i], expected_[i], args_.verbose)
              .c_str());
    }
    if (!differing.empty()) {
      if (plan_.have_rules) {
        std::fprintf(stderr,
                     "sockctl: %zu of %zu cells still differ from --expect "
                     "at --deadline %s\n",
                     differing.size(), cells_.size(),
                     absl::FormatDuration(plan_.deadline).c_str());
      } else {
        std::fprintf(stderr, "sockctl: %zu of %zu cells are not OK\n",
                     differing.size(), cells_.size());
      }
    }
    if (setup_rc != kExitOk) return setup_rc;
    return differing.empty() ? kExitOk : kExitFailure;
  }

  // Stops every server of this run, with its connections, on every agent.
  // (The probes' own sockets are the agents': each Probe call closed them
  // before it answered.) Failures are reported, never fatal: the label is
  // printed so that `sockctl server stop --label ...` can finish the job.
  void Cleanup() {
    (void)StopLabelledServers(fleet_, kRunLabel, run_, reached_);
  }

 private:
  // A server outlives the run only if sockctl dies without cleaning up; then
  // it stops by itself some minutes after the run's deadline.
  absl::Duration ServerTtl() const { return plan_.deadline + absl::Minutes(5); }

  // --tls: a CA for this run, and a certificate from it for each agent's
  // dial host (also its client certificate with --mtls). Only sockctl's
  // memory holds the CA key.
  int IssueCertificates() {
    absl::StatusOr<RunCa> ca = RunCa::Create(run_);
    if (!ca.ok()) {
      std::fprintf(stderr, "sockctl: %s\n",
                   std::string(ca.status().message()).c_str());
      return kExitFailure;
    }
    probe_.tls_ca_pem = ca->certificate_pem();
    for (size_t i = 0; i < fleet_.size(); ++i) {
      absl::StatusOr<IssuedCert> cert =
          ca->Issue(plan_.agents[i], {plan_.dial_hosts[i]});
      if (!cert.ok()) {
        std::fprintf(stderr, "sockctl: agent %s: %s\n", plan_.agents[i].c_str(),
                     std::string(cert.status().message()).c_str());
        return kExitFailure;
      }
      certs_.push_back(*std::move(cert));
    }
    if (plan_.mtls) probe_.client_certs = certs_;
    return kExitOk;
  }

  // Starts one echo server per transport on every agent. Returns the first
  // failure's exit code (in agent order), or kExitOk.
  int StartServers() {
    const size_t n = fleet_.size();
    const size_t jobs = plan_.transports.size() * n;
    servers_.assign(jobs, EchoServer());
    std::vector<int> codes(jobs, kExitOk);
    ForEachBounded(jobs, kMaxAgentsInFlight, [&](size_t job) {
      if (interrupt_.raised()) return;
      const ProbeTransport transport = plan_.transports[job / n];
      const size_t agent = job % n;
      AgentClient& client = fleet_.client(agent);
      StartServerRequest request;
      request.set_transport(ToApi(transport));
      request.mutable_bind()->set_host(args_.bind_host);
      request.mutable_bind()->set_port(args_.port);
      request.mutable_behavior()->mutable_echo();
      if (plan_.tls) {
        sockagent::v1::TlsServerOptions* tls = request.mutable_tls();
        tls->set_certificate_chain_pem(certs_[agent].certificate_pem);
        tls->set_private_key_pem(certs_[agent].private_key_pem);
        ToProto(plan_.per_probe, tls->mutable_handshake_timeout());
        if (plan_.mtls) {
          tls->set_client_ca_pem(probe_.tls_ca_pem);
          tls->set_client_auth(sockagent::v1::TLS_CLIENT_AUTH_REQUIRE);
        }
      }
      (*request.mutable_labels())[kRunLabel] = run_;
      ToProto(ServerTtl(), request.mutable_ttl());
      StartServerResponse response;
      grpc::Status s;
      // An agent that cannot be reached (or is busy) is asked again, with
      // backoff, before its failure counts.
      for (int attempt = 1;; ++attempt) {
        auto ctx = client.NewContext();
        s = client.agent().StartServer(ctx.get(), request, &response);
        const bool retry =
            s.error_code() == grpc::StatusCode::UNAVAILABLE ||
            s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
        if (!retry || attempt >= kMaxCallAttempts ||
            interrupt_.WaitFor(absl::Milliseconds(100) * (1 << attempt))) {
          break;
        }
      }
      if (s.ok() || !client.Describe(s).unreachable) {
        reached_[agent].store(true);
      }
      if (s.ok()) {
        servers_[job] = DialTarget(response.server(), plan_.dial_hosts[agent]);
        return;
      }
      const CallFailure failure = client.Describe(s);
      ReportAgentFailure(
          fleet_.name(agent), failure,
          absl::StrCat("start ", TransportWord(transport), " echo server"));
      servers_[job].error = absl::StrCat(
          "no ", TransportWord(transport), " echo server on ",
          fleet_.name(agent), ": ", failure.code, ": ", failure.Detail());
      codes[job] = failure.exit_code;
    });
    // Report in agent order: the first agent's failure, whatever transport.
    for (size_t agent = 0; agent < n; ++agent) {
      for (size_t t = 0; t < plan_.transports.size(); ++t) {
        if (codes[t * n + agent] != kExitOk) return codes[t * n + agent];
      }
    }
    return kExitOk;
  }

  const EchoServer& ServerOf(ProbeTransport transport, size_t agent) const {
    const size_t t = static_cast<size_t>(
        std::find(plan_.transports.begin(), plan_.transports.end(), transport) -
        plan_.transports.begin());
    return servers_[t * fleet_.size() + agent];
  }

  void ProbeCells(const std::vector<size_t>& which, absl::Time cut) {
    ProbeRound(
        probe_, fleet_,
        [this](const MatrixCell& cell) -> const EchoServer& {
          return ServerOf(cell.transport, cell.dst);
        },
        cells_, which, cut, reached_);
  }

  std::vector<size_t> Differing() const {
    std::vector<size_t> differing;
    for (size_t i = 0; i < cells_.size(); ++i) {
      if (!expected_[i].Accepts(cells_[i].result)) differing.push_back(i);
    }
    return differing;
  }

  void Print(bool as_expected) const {
    if (fleet_.output() != OutputFormat::kTable) {
      PrintStructured(std::cout,
                      MatrixReport(run_, plan_.agents, plan_.transports, cells_,
                                   expected_, as_expected),
                      fleet_.output());
      std::cout.flush();
      return;
    }
    for (size_t t = 0; t < plan_.transports.size(); ++t) {
      if (t > 0) std::cout << "\n";
      PrintMatrixTable(std::cout, plan_.agents, plan_.transports[t], cells_);
    }
    if (args_.verbose) {
      // Why each failure that was expected failed; the unexpected ones are
      // on stderr with their reasons.
      std::string notes;
      for (size_t i = 0; i < cells_.size(); ++i) {
        const MatrixCell& cell = cells_[i];
        if (cell.result == ProbeResult::kOk ||
            !expected_[i].Accepts(cell.result)) {
          continue;
        }
        absl::StrAppend(&notes, plan_.agents[cell.src], " -> ",
                        plan_.agents[cell.dst], " ",
                        TransportWord(cell.transport), ": ",
                        ResultName(cell.result), ": ", cell.message, "\n");
      }
      if (!notes.empty()) std::cout << "\n" << notes;
    }
    std::cout.flush();
  }

  const Fleet& fleet_;
  const MatrixArgs& args_;
  const MatrixPlan plan_;
  const InterruptFlag& interrupt_;
  const std::string run_;
  ProbeRun probe_;                 // What every probe of this run shares.
  std::vector<IssuedCert> certs_;  // --tls: by agent.
  // One per transport and agent: servers_[t * fleet size + agent].
  std::vector<EchoServer> servers_;
  // Whether any call reached each agent (so that it may hold something of
  // this run): Cleanup skips the others rather than report them twice.
  std::vector<std::atomic<bool>> reached_;
  // Each cell is written only by the one probe running for it at a time.
  std::vector<MatrixCell> cells_;
  std::vector<ExpectedResult> expected_;  // Parallel to cells_.
};

// --bandwidth: the N x N throughput table, by `sockctl perf`'s runner for
// every pair (or --pairs), one pair at a time (or --concurrent). The
// probing flags do not apply and are refused rather than ignored.
int RunBandwidthMatrix(Fleet& fleet, const MatrixArgs& args,
                       const CLI::App& command) {
  for (const char* flag :
       {"--tls", "--mtls", "--expect", "--self", "--bind-host",
        "--timeout-per-probe", "--parallel", "--deadline"}) {
    if (command.get_option(flag)->count() > 0) {
      return UsageError(absl::StrCat(
          flag,
          " is for the connectivity matrix; --bandwidth takes --pairs, "
          "--time, --budget, --concurrent, --udp, --rate, --port, "
          "--target-host"));
    }
  }
  if (args.tcp && args.udp) {
    return UsageError("--bandwidth measures one transport: --tcp or --udp");
  }
  PerfArgs perf;
  perf.tcp = args.tcp;
  perf.udp = args.udp;
  perf.time = args.time;
  perf.rate = args.rate;
  perf.port = args.port;
  perf.target_hosts = args.target_hosts;
  perf.pairs = args.pairs;
  perf.all_pairs = args.pairs.empty();
  perf.budget = args.budget;
  perf.concurrent = args.concurrent;
  perf.verbose = args.verbose;
  return RunPerf(fleet, perf);
}

int RunMatrix(Fleet& fleet, const MatrixArgs& args, const CLI::App& command) {
  if (args.bandwidth) return RunBandwidthMatrix(fleet, args, command);
  for (const char* flag :
       {"--pairs", "--budget", "--time", "--rate", "--concurrent"}) {
    if (command.get_option(flag)->count() > 0) {
      return UsageError(absl::StrCat(flag, " needs --bandwidth"));
    }
  }
  absl::StatusOr<MatrixPlan> plan = MakePlan(fleet, args);
  if (!plan.ok()) return UsageError(plan.status().message());
  absl::StatusOr<std::unique_ptr<InterruptFlag>> interrupt =
      InterruptFlag::Install();
  if (!interrupt.ok()) {
    std::fprintf(stderr, "sockctl: %s\n",
                 std::string(interrupt.status().message()).c_str());
    return kExitFailure;
  }
  MatrixRun run(fleet, args, *std::move(plan), **interrupt);
  int rc = run.Run();
  if (rc == kExitInterrupted) {
    std::fprintf(stderr, "sockctl: interrupted; cleaning up\n");
  }
  run.Cleanup();
  return (*interrupt)->raised() ? kExitInterrupted : rc;
}

}  // namespace

void AddMatrixCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<MatrixArgs>();
  CLI::App* matrix = app.add_subcommand(
      "matrix",
      "Connectivity matrix of several agents: each one connects to an echo "
      "server on every other and sends a probe; prints who reaches whom and "
      "the round trip");
  matrix->footer(
      R"(Every agent starts an echo server (label sockctl-matrix=RUN) for each
transport; then every agent at once is asked (one Probe call each) to dial
every other agent's server (HOST: DST's --agent/inventory host, or
--target-host), send "sockctl-probe RUN SRC->DST TRANSPORT N\n" and wait
for the echo. The agents probe on their own loops, at most --parallel at a
time each; sockctl makes one call per agent, not one per cell. A call that
cannot reach its agent (or finds it busy) is retried with backoff (0.1 s,
0.2 s, ... 4 retries) before its row says ERROR and why. Afterwards (also
on error, Ctrl-C or SIGTERM) every server of the run is stopped by its
label; a second Ctrl-C exits at once.

Cells: OK RTT (the echo came back; RTT is the source agent's own measure,
from the first payload byte written to the last echo byte read), REFUSED,
TIMEOUT (no connect or no echo within --timeout-per-probe; UDP cannot tell
refused from dropped), UNREACHABLE (host or network unreachable, no
route), DNS (DST's host did not resolve on SRC), TLS: WHY (with --tls: the
handshake failed; WHY is e.g. unknown CA, wrong name, expired certificate,
not TLS, handshake timed out), ERROR (anything else: -v or -o json say
what). Classes come from the agents' errno and resolver codes. Rows are
sources, columns destinations; "-" is not probed (the diagonal, unless
--self).
  tcp
  SRC\DST  a         b
  a        -         OK 0.4ms
  b        TIMEOUT   -
-o json prints one object (-o yaml the same as YAML): {"run":..,
"agents":[..],"transports":[..],"asExpected":BOOL,"cells":[{"src","dst",
"transport","result","message","expected","attempts","rtt" (a duration,
"0.000412s"; only when OK)},..]}.

--expect FILE, one rule per line: SRC DST TRANSPORT RESULT, where SRC and
DST are agent names or *, TRANSPORT tcp, udp or *, RESULT one of the cell
classes, FAIL (anything but OK) or * (anything). The last matching line
wins; cells no line matches expect OK; '#' starts a comment. Cells that
differ are re-probed every second, only they and all at once, until all
match or --deadline passes. Without --expect every cell must be OK and
nothing is re-probed.

--deadline bounds the whole probing, measured from the first probe (the
echo servers start before): probes still running then end TIMEOUT, and
the agents answer at once, so the run ends within a few gRPC round trips
of it.

--tls: sockctl makes a CA for the run (in memory only) and gives each
agent's echo server a certificate from it for the host the others dial
(IP SAN for an address, DNS SAN for a name); every probe trusts only that
CA and verifies the name, so each OK cell is a verified TLS handshake plus
the echo over it. --mtls also makes every server require a client
certificate from the CA and every source present its own. TCP only.

Exit status: 0 every cell as expected; 1 some cell is not (each printed on
stderr: "a -> b tcp: expected OK, got TIMEOUT"); 2 usage error; 3 or 10+N
an echo server could not be started on some agent (the first such agent's
code; the matrix is still printed); 130 interrupted.

--bandwidth: throughput instead of reachability. Each pair is a `sockctl
perf` run (TCP, or --udp at --rate): the receiving agent's discard server
(with --port: one already listening there is used), the sender streaming
for --time (default 2s), one pair at a time (--concurrent N: N at once),
then the N x N table of receiver bit rates (-o json: perf's PerfMatrix).
All pairs of N agents is N*(N-1) runs: above 8 agents give --pairs or
--budget D (the whole run's time; 128 agents at 5 s a pair would take 22.6
hours). The probing flags (--tls, --expect, --deadline, ...) do not apply.

Examples:
  sockctl matrix --agent 10.0.0.1:7878 --agent 10.0.0.2:7878
  sockctl matrix --inventory fleet.txt --tcp --udp --expect expect.txt
  sockctl matrix --inventory fleet.txt --target-host db-1=10.1.0.5
  sockctl matrix --inventory fleet.txt --tls --mtls
  sockctl matrix --inventory fleet.txt --bandwidth --budget 5m)");
  matrix->add_flag("--tcp", args->tcp, "Probe TCP (the default)")
      ->group("Probes");
  matrix->add_flag("--udp", args->udp, "Probe UDP (with --tcp: both)")
      ->group("Probes");
  matrix
      ->add_option("--port", args->port,
                   "Port of every echo server (0: each agent picks one); "
                   "--bandwidth: of the discard servers")
      ->type_name("PORT")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str()
      ->group("Probes");
  matrix
      ->add_option("--bind-host", args->bind_host,
                   "Address the echo servers bind (default \"\": every "
                   "address, dual stack)")
      ->type_name("HOST")
      ->group("Probes");
  matrix
      ->add_option("--target-host", args->target_hosts,
                   "NAME=HOST: dial agent NAME's echo server at HOST (default: "
                   "the host of its --agent/inventory address); repeat")
      ->type_name("NAME=HOST")
      ->allow_extra_args(false)
      ->group("Probes");
  matrix
      ->add_option("--timeout-per-probe", args->per_probe,
                   "Each probe's whole time: connect, TLS handshake, echo "
                   "(at most 60s)")
      ->type_name("D")
      ->capture_default_str()
      ->group("Probes");
  matrix->add_flag("--self", args->self, "Also probe each agent from itself")
      ->group("Probes");
  matrix
      ->add_flag("--tls", args->tls,
                 "TLS echo servers with certificates from a per-run CA; "
                 "every probe verifies (TCP only)")
      ->group("Probes");
  matrix
      ->add_flag("--mtls", args->mtls,
                 "--tls, and every server requires a client certificate "
                 "from the run's CA")
      ->group("Probes");
  matrix
      ->add_option("--parallel", args->parallel,
                   "Probes in flight at most on each source agent")
      ->type_name("N")
      ->check(CLI::Range(1, 256))
      ->capture_default_str()
      ->group("Probes");
  matrix
      ->add_option("--expect", args->expect_file,
                   "Expected matrix: lines SRC DST TRANSPORT RESULT (see "
                   "below); re-probe until it matches")
      ->type_name("FILE")
      ->group("Expectation");
  matrix
      ->add_option("--deadline", args->deadline,
                   "End all probing by D (from the first probe); with "
                   "--expect, re-probe until then")
      ->type_name("D")
      ->capture_default_str()
      ->group("Expectation");
  matrix
      ->add_flag("--bandwidth", args->bandwidth,
                 "Throughput instead of reachability: `sockctl perf` for "
                 "every ordered pair (or --pairs); the N x N bit-rate table")
      ->group("Bandwidth");
  matrix
      ->add_option("--pairs", args->pairs,
                   "SRC:DST pairs (agent names), comma-separated (default: "
                   "all; above 8 agents give --budget)")
      ->type_name("PAIRS")
      ->group("Bandwidth");
  matrix
      ->add_option("-t,--time", args->time,
                   "Each pair's run (default 2s; at most 60s)")
      ->type_name("D")
      ->group("Bandwidth");
  matrix
      ->add_option("--budget", args->budget,
                   "The whole run's time; each pair's --time shrinks to fit")
      ->type_name("D")
      ->group("Bandwidth");
  matrix
      ->add_option("--concurrent", args->concurrent,
                   "Pairs run at once (default 1; they then share links)")
      ->type_name("N")
      ->check(CLI::Range(1, 64))
      ->group("Bandwidth");
  matrix
      ->add_option("-b,--rate", args->rate,
                   "With --udp: bits per second per pair (100M, 1G)")
      ->type_name("R")
      ->group("Bandwidth");
  matrix->add_flag("-v,--verbose", args->verbose,
                   "Say why each cell is not OK; progress on stderr");
  commands.push_back({matrix, nullptr,
                      [args, matrix](Fleet& fleet) {
                        return RunMatrix(fleet, *args, *matrix);
                      },
                      kStructuredOutputs});
}

}  // namespace sockctl
