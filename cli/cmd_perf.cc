// `sockctl perf`: bandwidth between two agents, iperf3 style. The agent
// --to starts a discard server (label sockctl-perf=RUN, with a TTL); the
// agent --from streams to it from its own loop (the Perf RPC); then sockctl
// reads the receiving server's connections for the receiver's figures
// (bytes and time; UDP: loss, jitter, order, counted by the receiving
// agent from the datagrams' headers), prints one summary, and stops the
// server. With --pairs or --all-pairs it does so for many pairs, one at a
// time (or --concurrent N), and prints the N x N throughput table.
// Everything it starts carries the label and is stopped by it on every way
// out, SIGINT and SIGTERM included.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/interrupt.h"
#include "cli/labelled_run.h"
#include "cli/matrix.h"
#include "cli/matrix_probe.h"
#include "cli/output.h"
#include "cli/parallel.h"
#include "cli/perf.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::Connection;
using sockagent::v1::PerfRequest;
using sockagent::v1::PerfResponse;
using sockctl::output::PerfMatrix;
using sockctl::output::PerfRun;

constexpr char kRunLabel[] = "sockctl-perf";
// The agent's bounds (agent/perf.h), checked here too so that a typo is a
// usage error before any server starts.
constexpr absl::Duration kMaxDuration = absl::Seconds(60);
constexpr uint32_t kMaxParallel = 16;
// Beyond the run itself: connect (at most 10 s), the drain (at most 5 s)
// and the answer.
constexpr absl::Duration kPerfCallSlack = absl::Seconds(20);
// How long the receiver's figures may take to settle after the sender's
// answer (UDP datagrams still in flight, a TCP close not yet seen).
constexpr absl::Duration kSettleWait = absl::Seconds(3);
constexpr absl::Duration kSettlePoll = absl::Milliseconds(100);

struct PerfPlan {
  std::vector<std::string> agents;
  std::vector<std::string> dial_hosts;  // "" when unknown (unix: address).
  std::vector<std::pair<size_t, size_t>> pairs;
  bool matrix = false;  // --pairs or --all-pairs.
  bool udp = false;
  absl::Duration duration;  // Per pair.
  uint64_t bytes = 0;
  uint64_t rate = 0;
};

// An agent by name, or by the address it was given with --agent.
absl::StatusOr<size_t> AgentIndex(const std::vector<std::string>& agents,
                                  const std::string& word,
                                  absl::string_view flag) {
  for (size_t i = 0; i < agents.size(); ++i) {
    if (agents[i] == word) return i;
  }
  absl::StatusOr<std::string> address = ParseAgentAddress(word);
  for (size_t i = 0; address.ok() && i < agents.size(); ++i) {
    if (agents[i] == *address) return i;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": no agent is named '", word,
                   "' (give agents with --agent or --inventory)"));
}

absl::StatusOr<PerfPlan> MakePlan(const Fleet& fleet, const PerfArgs& args) {
  PerfPlan plan;
  plan.udp = args.udp;
  for (size_t i = 0; i < fleet.size(); ++i)
    plan.agents.push_back(fleet.name(i));
  plan.matrix = !args.pairs.empty() || args.all_pairs;
  if (plan.matrix && (!args.from.empty() || !args.to.empty())) {
    return absl::InvalidArgumentError(
        "--pairs/--all-pairs run many pairs: drop --from/--to");
  }
  if (!args.budget.empty() && !plan.matrix) {
    return absl::InvalidArgumentError(
        "--budget is for --pairs/--all-pairs; a single run takes --time");
  }
  if (args.parallel == 0 || args.parallel > kMaxParallel) {
    return absl::InvalidArgumentError(
        absl::StrCat("--parallel: 1 to ", kMaxParallel, " streams"));
  }
  if (!args.bytes.empty()) {
    absl::StatusOr<uint64_t> bytes = ParseByteCount("--bytes", args.bytes);
    if (!bytes.ok()) return bytes.status();
    plan.bytes = *bytes;
  }
  if (plan.udp) {
    absl::StatusOr<uint64_t> rate = ParseRate("--rate", args.rate);
    if (!rate.ok()) return rate.status();
    plan.rate = *rate;
  }
  absl::Duration duration = plan.matrix ? absl::Seconds(2) : absl::Seconds(5);
  if (!args.time.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag("--time", args.time);
    if (!d.ok()) return d.status();
    duration = *d;
  } else if (plan.bytes > 0) {
    duration = absl::ZeroDuration();  // Until the bytes are sent.
  }
  if (duration > kMaxDuration) {
    return absl::InvalidArgumentError(
        absl::StrCat("--time: at most ", absl::FormatDuration(kMaxDuration),
                     " (the agent's bound)"));
  }
  if (duration == absl::ZeroDuration() && plan.bytes == 0) {
    return absl::InvalidArgumentError("--time 0 needs --bytes");
  }

  if (plan.matrix) {
    if (fleet.size() < 2) {
      return absl::InvalidArgumentError(
          "--pairs/--all-pairs need at least two agents");
    }
    if (args.all_pairs) {
      plan.pairs = AllPairs(fleet.size());
    } else {
      auto pairs = ParsePairs(args.pairs, plan.agents);
      if (!pairs.ok()) return pairs.status();
      plan.pairs = *std::move(pairs);
    }
    absl::Duration budget;
    if (!args.budget.empty()) {
      auto b = ParseDurationFlag("--budget", args.budget);
      if (!b.ok()) return b.status();
      budget = *b;
    }
    const absl::Duration each = duration > absl::ZeroDuration()
                                    ? duration
                                    : kMaxDuration;  // --bytes alone.
    auto per = PairDuration(plan.pairs.size(), args.concurrent, each, budget,
                            args.all_pairs, fleet.size());
    if (!per.ok()) return per.status();
    if (duration > absl::ZeroDuration() || *per < each) duration = *per;
  } else {
    size_t from = 0;
    size_t to = fleet.size() > 1 ? 1 : 0;
    if (!args.from.empty()) {
      auto i = AgentIndex(plan.agents, args.from, "--from");
      if (!i.ok()) return i.status();
      from = *i;
    }
    if (!args.to.empty()) {
      auto i = AgentIndex(plan.agents, args.to, "--to");
      if (!i.ok()) return i.status();
      to = *i;
    } else if (fleet.size() > 2) {
      return absl::InvalidArgumentError(
          "perf with more than two agents: say which with --from and --to "
          "(or run --pairs/--all-pairs)");
    }
    if (args.from.empty() && !args.to.empty() && fleet.size() == 2) {
      from = 1 - to;
    }
    plan.pairs = {{from, to}};
  }
  plan.duration = duration;

  // --target-host NAME=HOST, or a bare HOST for the single run's --to.
  std::vector<std::string> named;
  std::string bare;
  for (const std::string& word : args.target_hosts) {
    if (word.find('=') == std::string::npos) {
      if (plan.matrix || !bare.empty()) {
        return absl::InvalidArgumentError(
            "--target-host: give NAME=HOST (a bare HOST only for a single "
            "run's --to)");
      }
      bare = word;
    } else {
      named.push_back(word);
    }
  }
  auto targets = ParseTargetHosts(named);
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
    if (!bare.empty() && i == plan.pairs[0].second) {
      plan.dial_hosts.push_back(bare);
    } else if (it != targets->end()) {
      plan.dial_hosts.push_back(it->second);
    } else {
      absl::StatusOr<std::string> host =
          AgentHost(fleet.client(i).options().agent);
      plan.dial_hosts.push_back(host.ok() ? *host : "");
    }
  }
  for (const auto& [src, dst] : plan.pairs) {
    if (plan.dial_hosts[dst].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "agent ", plan.agents[dst],
          " is reached over a UNIX socket: give --target-host ",
          plan.matrix ? absl::StrCat(plan.agents[dst], "=HOST") : "HOST",
          " (the address the sender dials)"));
    }
  }
  return plan;
}

class PerfSession final {
 public:
  PerfSession(const Fleet& fleet, const PerfArgs& args, PerfPlan plan,
              const InterruptFlag& interrupt)
      : fleet_(fleet),
        args_(args),
        plan_(std::move(plan)),
        interrupt_(interrupt),
        run_(NewRunId()),
        reached_(fleet.size()) {}

  // Runs every pair, prints; returns the exit code. Cleanup() must follow.
  int Run() {
    std::vector<PerfRun> runs(plan_.pairs.size());
    std::vector<int> codes(plan_.pairs.size(), kExitOk);
    ForEachBounded(plan_.pairs.size(), std::max<uint32_t>(args_.concurrent, 1),
                   [&](size_t i) {
                     if (interrupt_.raised()) return;
                     runs[i] = RunPair(plan_.pairs[i].first,
                                       plan_.pairs[i].second, &codes[i]);
                     if (args_.verbose || plan_.matrix) Progress(runs[i]);
                   });
    if (interrupt_.raised()) return kExitInterrupted;
    const OutputFormat format = fleet_.output();
    if (!plan_.matrix) {
      const PerfRun& run = runs[0];
      if (format != OutputFormat::kTable) {
        if (!PrintStructured(std::cout, run, format)) return kExitFailure;
      } else if (run.error().empty()) {
        PrintPerfRun(std::cout, run);
      }
      std::cout.flush();
    } else {
      PerfMatrix matrix;
      for (const std::string& a : plan_.agents) matrix.add_agents(a);
      matrix.set_transport(plan_.udp ? "udp" : "tcp");
      for (PerfRun& run : runs) *matrix.add_runs() = std::move(run);
      if (format != OutputFormat::kTable) {
        if (!PrintStructured(std::cout, matrix, format)) return kExitFailure;
      } else {
        PrintPerfMatrix(std::cout, matrix);
      }
      std::cout.flush();
    }
    for (int code : codes) {
      if (code != kExitOk) return code;
    }
    return kExitOk;
  }

  // Stops every server (and closes every connection) of this run by its
  // label on every agent reached. Failures are reported, never fatal.
  void Cleanup() {
    (void)StopLabelledServers(fleet_, kRunLabel, run_, reached_);
  }

 private:
  // A server outlives the run only if sockctl dies without cleaning up;
  // then it stops by itself.
  absl::Duration ServerTtl() const {
    return (plan_.duration > absl::ZeroDuration() ? plan_.duration
                                                  : kMaxDuration) +
           kPerfCallSlack + absl::Minutes(2);
  }

  void Progress(const PerfRun& run) const {
    if (!run.error().empty()) {
      std::fprintf(stderr, "sockctl: %s -> %s: %s\n", run.from().c_str(),
                   run.to().c_str(), run.error().c_str());
    } else if (plan_.matrix) {
      std::fprintf(stderr, "sockctl: %s -> %s: %s\n", run.from().c_str(),
                   run.to().c_str(),
                   FormatBitRate(run.receiver().bits_per_second()).c_str());
    }
  }

  PerfRun RunPair(size_t src, size_t dst, int* code) {
    PerfRun run;
    run.set_run(run_);
    run.set_from(plan_.agents[src]);
    run.set_to(plan_.agents[dst]);
    run.set_transport(plan_.udp ? "udp" : "tcp");
    AgentClient& sender = fleet_.client(src);
    AgentClient& receiver = fleet_.client(dst);
    auto fail = [&](AgentClient& client, size_t agent, const grpc::Status& s,
                    absl::string_view what) {
      const CallFailure failure = client.Describe(s);
      ReportAgentFailure(fleet_.name(agent), failure, what);
      run.set_error(
          absl::StrCat(what, ": ", failure.code, ": ", failure.Detail()));
      *code = failure.exit_code;
    };

    // 1. The discard server on the receiving agent: with --port, one
    // already listening there (a standing `server start --discard --port
    // P`, iperf3 -s style) is used and left running; otherwise one of our
    // own, stopped afterwards.
    sockagent::v1::StartServerRequest start;
    start.set_transport(plan_.udp ? sockagent::v1::TRANSPORT_UDP
                                  : sockagent::v1::TRANSPORT_TCP);
    start.mutable_bind()->set_port(args_.port);
    start.mutable_behavior()->mutable_discard();
    (*start.mutable_labels())[kRunLabel] = run_;
    ToProto(ServerTtl(), start.mutable_ttl());
    sockagent::v1::StartServerResponse started;
    bool reused = false;
    if (args_.port != 0) {
      std::optional<sockagent::v1::Server> standing;
      grpc::Status s =
          FindDiscardServer(receiver, start.transport(), args_.port, &standing);
      if (!s.ok()) {
        fail(receiver, dst, s, "list the servers");
        return run;
      }
      if (standing.has_value()) {
        *started.mutable_server() = *std::move(standing);
        reused = true;
        if (args_.verbose) {
          std::fprintf(stderr, "sockctl: %s: using its discard server %s\n",
                       fleet_.name(dst).c_str(), started.server().id().c_str());
        }
      }
    }
    if (!reused) {
      auto ctx = receiver.NewContext();
      grpc::Status s = receiver.agent().StartServer(ctx.get(), start, &started);
      if (s.ok()) reached_[dst].store(true);
      if (!s.ok()) {
        fail(receiver, dst, s, "start the discard server");
        return run;
      }
    }
    auto stop_ours = [&] {
      if (!reused) StopServer(receiver, started.server().id());
    };
    const std::string& host = plan_.dial_hosts[dst];
    const EchoServer target = DialTarget(started.server(), host);
    run.set_target(host.find(':') != std::string::npos
                       ? absl::StrCat("[", host, "]:", target.port)
                       : absl::StrCat(host, ":", target.port));

    // 2. The run, from the sending agent.
    PerfRequest request;
    request.mutable_target()->set_host(host);
    request.mutable_target()->set_port(target.port);
    request.set_transport(start.transport());
    if (plan_.duration > absl::ZeroDuration()) {
      ToProto(plan_.duration, request.mutable_duration());
    }
    request.set_bytes(plan_.bytes);
    request.set_parallel(args_.parallel);
    if (plan_.udp) {
      request.set_udp_rate_bits_per_sec(plan_.rate);
      request.set_udp_datagram_bytes(args_.length);
    }
    PerfResponse response;
    grpc::Status s = CallPerf(sender, request, &response);
    if (s.ok() || sender.Describe(s).exit_code != kExitUnreachable) {
      reached_[src].store(true);
    }
    if (!s.ok()) {
      if (!interrupt_.raised()) fail(sender, src, s, "perf");
      stop_ours();
      return run;
    }

    // 3. The receiver's view, once it settled.
    std::vector<Connection> conns =
        ReceiverView(receiver, started.server(), response, reused);
    stop_ours();
    if (conns.empty() && response.bytes() > 0) {
      std::fprintf(stderr,
                   "sockctl: %s -> %s: the receiver shows none of this run's "
                   "%s (NAT between them? TCP is matched by the sender's "
                   "addresses)\n",
                   fleet_.name(src).c_str(), fleet_.name(dst).c_str(),
                   plan_.udp ? "datagrams" : "connections");
    }
    PerfRun summary = Summarize(response, conns, plan_.udp);
    summary.set_run(run.run());
    summary.set_from(run.from());
    summary.set_to(run.to());
    summary.set_transport(run.transport());
    summary.set_target(run.target());
    for (const auto& stream : response.streams()) {
      if (!stream.error().empty() && !plan_.udp) *code = kExitFailure;
    }
    return summary;
  }

  // The Perf call; Ctrl-C cancels it (the agent closes the streams).
  grpc::Status CallPerf(AgentClient& client, const PerfRequest& request,
                        PerfResponse* response) {
    const absl::Duration run_for =
        plan_.duration > absl::ZeroDuration() ? plan_.duration : kMaxDuration;
    auto ctx = client.NewContext(run_for + kPerfCallSlack);
    absl::Notification done;
    grpc::Status status;
    client.agent().async()->Perf(ctx.get(), &request, response,
                                 [&](grpc::Status s) {
                                   status = std::move(s);
                                   done.Notify();
                                 });
    while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      if (interrupt_.raised()) ctx->TryCancel();
    }
    return status;
  }

  // Lists the server's connections (closed ones too) until the figures
  // settle: TCP, every stream's connection closed (the sender's drain saw
  // the receiver close, so usually at once); UDP, the datagrams of this run
  // all arrived or stopped changing. At most kSettleWait. A server of our
  // own serves only this run; a standing one (`shared`) has other callers,
  // so its TCP connections are matched by the sender's addresses.
  std::vector<Connection> ReceiverView(AgentClient& client,
                                       const sockagent::v1::Server& server,
                                       const PerfResponse& response,
                                       bool shared) {
    uint64_t sent = 0;
    for (const auto& stream : response.streams()) sent += stream.datagrams();
    const absl::Time until = absl::Now() + kSettleWait;
    std::vector<Connection> conns;
    uint64_t previous = UINT64_MAX;
    while (true) {
      conns.clear();
      sockagent::v1::ListConnectionsRequest list;
      list.set_server_id(server.id());
      list.set_include_closed(true);
      list.set_page_size(1000);
      sockagent::v1::ListConnectionsResponse listed;
      auto ctx = client.NewContext();
      grpc::Status s = client.agent().ListConnections(ctx.get(), list, &listed);
      if (s.ok()) {
        // This run's: UDP sessions by the run id; TCP connections all of
        // them on our own server, by the sender's addresses on a standing
        // one (NAT between the agents hides them there).
        for (const Connection& c : listed.connections()) {
          if (plan_.udp ? c.has_perf() && c.perf().run_id() == response.run_id()
                        : !shared || FromSender(c, response)) {
            conns.push_back(c);
          }
        }
      }
      bool settled = s.ok();
      if (plan_.udp) {
        uint64_t got = 0;
        for (const Connection& c : conns) got += c.perf().datagrams();
        settled = settled && (got >= sent || got == previous);
        previous = got;
      } else {
        size_t closed = 0;
        for (const Connection& c : conns) {
          if (c.state() == sockagent::v1::CONNECTION_STATE_CLOSED) ++closed;
        }
        settled =
            settled && closed >= static_cast<size_t>(response.streams_size());
      }
      if (settled || absl::Now() >= until || interrupt_.raised()) break;
      interrupt_.WaitFor(kSettlePoll);
    }
    return conns;
  }

  // Whether the receiver's connection c is one of the sender's streams: its
  // remote address is a stream's local one. (Behind NAT none is: the
  // receiver's side is then empty, and the summary says so.)
  static bool FromSender(const Connection& c, const PerfResponse& response) {
    for (const auto& stream : response.streams()) {
      if (c.remote().port() == stream.local().port() &&
          c.remote().ip() == stream.local().ip()) {
        return true;
      }
    }
    return false;
  }

  // A standing discard server of this transport on port, or none. Other
  // servers on the port are the StartServer's to refuse ("in use").
  static grpc::Status FindDiscardServer(
      AgentClient& client, sockagent::v1::Transport transport, uint32_t port,
      std::optional<sockagent::v1::Server>* found) {
    sockagent::v1::ListServersRequest list;
    list.set_transport(transport);
    list.set_page_size(1000);
    do {
      sockagent::v1::ListServersResponse listed;
      auto ctx = client.NewContext();
      grpc::Status s = client.agent().ListServers(ctx.get(), list, &listed);
      if (!s.ok()) return s;
      for (const sockagent::v1::Server& server : listed.servers()) {
        // Another perf run's own server (this one's, with --concurrent)
        // is stopped when that run ends: never borrowed.
        if (!server.behavior().has_discard() ||
            server.state() != sockagent::v1::SERVER_STATE_LISTENING ||
            server.labels().contains(kRunLabel)) {
          continue;
        }
        for (const auto& address : server.local_addresses()) {
          if (address.port() == port) {
            *found = server;
            return grpc::Status::OK;
          }
        }
      }
      list.set_page_token(listed.next_page_token());
    } while (!list.page_token().empty());
    return grpc::Status::OK;
  }

  void StopServer(AgentClient& client, const std::string& id) {
    sockagent::v1::StopServerRequest stop;
    stop.set_id(id);
    stop.set_close_connections(true);
    sockagent::v1::StopServerResponse stopped;
    auto ctx = client.NewContext();
    (void)client.agent().StopServer(ctx.get(), stop, &stopped);
  }

  const Fleet& fleet_;
  const PerfArgs& args_;
  const PerfPlan plan_;
  const InterruptFlag& interrupt_;
  const std::string run_;
  // Whether any call reached each agent (so it may hold a server of the
  // run): Cleanup skips the others.
  std::vector<std::atomic<bool>> reached_;
};

}  // namespace

int RunPerf(Fleet& fleet, const PerfArgs& args) {
  absl::StatusOr<PerfPlan> plan = MakePlan(fleet, args);
  if (!plan.ok()) return UsageError(plan.status().message());
  absl::StatusOr<std::unique_ptr<InterruptFlag>> interrupt =
      InterruptFlag::Install();
  if (!interrupt.ok()) {
    std::fprintf(stderr, "sockctl: %s\n",
                 std::string(interrupt.status().message()).c_str());
    return kExitFailure;
  }
  PerfSession session(fleet, args, *std::move(plan), **interrupt);
  const int rc = session.Run();
  if (rc == kExitInterrupted) {
    std::fprintf(stderr, "sockctl: interrupted; cleaning up\n");
  }
  session.Cleanup();
  return (*interrupt)->raised() ? kExitInterrupted : rc;
}

void AddPerfCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<PerfArgs>();
  CLI::App* perf = app.add_subcommand(
      "perf",
      "Bandwidth between two agents, iperf3 style: --to starts a discard "
      "server, --from streams to it (TCP at full speed, UDP at --rate); "
      "prints sender and receiver figures");
  perf->footer(
      R"(The agent --to starts a discard server (label sockctl-perf=RUN, TTL)
on --port; the agent --from dials it at --to's host (the host of its
--agent/inventory address, or --target-host) and streams to it from its
own loop (the Perf RPC): TCP, --parallel connections writing as fast as
the kernel takes the bytes for --time or until --bytes; UDP, datagrams of
--length bytes at --rate in all, each numbered and timestamped, so the
receiving agent counts loss, reordering and RFC 3550 jitter. Then sockctl
reads the receiving server's connections and prints both sides; the
server is stopped afterwards (also on error, Ctrl-C or SIGTERM). With
--port P, a discard server of the transport already listening on P (a
standing `sockctl server start --discard --port P`, like iperf3 -s) is
used instead and left running; the receiver's figures count only this
run's connections (TCP: by the sender's addresses, so NAT between the
two hides them; UDP: by the run id in every datagram).
  perf a -> b tcp 10.0.0.2:40123, 1 stream, run 1f2e3d4c
  ROLE      BYTES   SECONDS  BITRATE      RETR  RTT   CWND
  sender    5.5GiB  5.00     9.41 Gbit/s  0     45us  2.5MiB
  receiver  5.5GiB  5.01     9.40 Gbit/s
UDP columns: DATAGRAMS, LOST (sent - received)/sent, JITTER, OUT-OF-ORDER.
-o json: {"run","from","to","transport","target","sender":{...},
"receiver":{...},"response":{the sender's per-stream answer}}.

--pairs a:b,b:c or --all-pairs: one run per pair (default --time 2s), one
at a time (--concurrent N runs N at once; they then share the links), then
the N x N table of receiver bit rates. All pairs of N agents is N*(N-1)
runs: above 8 agents --all-pairs needs --budget D, the whole run's time,
which shortens each pair's --time to fit (128 agents at 5 s a pair would
take 22.6 hours).

Bounds (the agent's): --time at most 60s, --parallel 1 to 16, --rate at
most 10G, --length 32 to 65507, --bytes at most 1T; at most 2 perf runs at
once per sending agent. Destinations obey the sender's --allow-dest.

Exit status: 0 done; 1 a stream failed; 3 or 10+N a call failed (the
agent's status); 2 usage; 130 interrupted.

Examples:
  sockctl --agent 10.0.0.1:7878 --agent 10.0.0.2:7878 perf
  sockctl --inventory fleet.txt perf --from web-1 --to db-1 --udp --rate 200M
  sockctl --inventory fleet.txt perf --all-pairs --time 1s)");
  perf->add_option("--from", args->from,
                   "The sending agent (name, or address given to --agent; "
                   "default: the first)")
      ->type_name("AGENT");
  perf->add_option("--to", args->to,
                   "The receiving agent (default: the second, or the only "
                   "one: itself)")
      ->type_name("AGENT");
  CLI::Option* tcp = perf->add_flag("--tcp", args->tcp, "TCP (the default)");
  perf->add_flag("--udp", args->udp, "UDP at --rate")->excludes(tcp);
  perf->add_option("-t,--time", args->time,
                   "How long to send (default 5s; pairs: 2s; with --bytes "
                   "alone: until sent; max 60s)")
      ->type_name("D");
  perf->add_option("-P,--parallel", args->parallel,
                   "Streams (connections or UDP sockets), 1-16")
      ->type_name("N")
      ->capture_default_str();
  perf->add_option("-n,--bytes", args->bytes,
                   "Stop after this many bytes in all (10M, 1G: powers of "
                   "1024)")
      ->type_name("N");
  perf->add_option("-b,--rate", args->rate,
                   "UDP: bits per second in all (100M, 1.5G: powers of 1000)")
      ->type_name("R")
      ->capture_default_str();
  perf->add_option("-l,--length", args->length,
                   "UDP: datagram bytes, header included (0: 1460)")
      ->type_name("N");
  perf->add_option("--port", args->port,
                   "Port of the discard server (0: the agent picks one); a "
                   "discard server already listening there is used")
      ->type_name("PORT")
      ->check(CLI::Range(0, 65535));
  perf->add_option("--target-host", args->target_hosts,
                   "HOST the sender dials (the --to agent's), or NAME=HOST "
                   "for agent NAME; repeat")
      ->type_name("HOST")
      ->allow_extra_args(false);
  perf->add_option("--pairs", args->pairs,
                   "Run SRC:DST pairs (agent names), comma-separated, and "
                   "print the throughput table")
      ->type_name("PAIRS");
  perf->add_flag("--all-pairs", args->all_pairs,
                 "Run every ordered pair of agents");
  perf->add_option("--budget", args->budget,
                   "Pairs: the whole run's time; each pair's --time shrinks "
                   "to fit")
      ->type_name("D");
  perf->add_option("--concurrent", args->concurrent,
                   "Pairs: runs at once (default 1)")
      ->type_name("N")
      ->check(CLI::Range(1, 64));
  perf->add_flag("-v,--verbose", args->verbose, "Progress on stderr");
  commands.push_back({perf, nullptr,
                      [args](Fleet& fleet) { return RunPerf(fleet, *args); },
                      kStructuredOutputs});
}

}  // namespace sockctl
