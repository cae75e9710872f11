// `probe`: the agent dials targets itself, all at once (the Probe RPC), and
// says for each whether it answered: agnhost connect's job, from any agent
// or from every agent of a fleet.
//
//   sockctl probe db-1:5432 10.0.0.7:80 --timeout-per-probe 1s
//   TARGET        RESULT   CONNECT  RTT     ERROR
//   db-1:5432     OK       1.2ms    -
//   ...
//
// Exit code 0 when every target answered OK, 1 when one did not.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/output.h"
#include "cli/tls_args.h"

namespace sockctl {
namespace {

using sockagent::v1::ProbeRequest;
using sockagent::v1::ProbeResponse;
using sockagent::v1::ProbeResult;

// The default payload of --echo (and of UDP, which always needs one).
constexpr char kDefaultPayload[] = "sockctl-probe\n";

struct ProbeArgs {
  std::vector<std::string> targets;
  bool udp = false;
  bool unix_paths = false;
  bool echo = false;
  std::string data;
  bool data_given = false;
  std::string timeout = "2s";
  uint32_t concurrency = 0;
  ClientTlsArgs tls;
};

absl::StatusOr<ProbeRequest> BuildRequest(const ProbeArgs& args) {
  ProbeRequest request;
  if (absl::Status s = ParseDurationFlag("--timeout-per-probe", args.timeout,
                                         request.mutable_timeout());
      !s.ok()) {
    return s;
  }
  request.set_concurrency(args.concurrency);
  bool tls_wanted = false;
  sockagent::v1::TlsClientOptions tls;
  if (absl::Status s = FillClientTlsOptions(args.tls, &tls_wanted, &tls);
      !s.ok()) {
    return s;
  }
  if (tls_wanted && (args.udp || args.unix_paths)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ssl goes with TCP targets, not ",
                     args.udp ? "--udp (no DTLS)" : "--unix"));
  }
  // UDP has no handshake: a probe is a datagram and its echo.
  const bool echo = args.echo || args.udp;
  const std::string payload =
      args.data_given ? args.data : (echo ? kDefaultPayload : "");
  for (const std::string& text : args.targets) {
    sockagent::v1::ProbeTarget* target = request.add_targets();
    if (args.unix_paths) {
      target->set_transport(sockagent::v1::TRANSPORT_UNIX);
      target->mutable_endpoint()->set_unix_path(text);
    } else {
      absl::StatusOr<bool> has_port =
          ParseHostPort(text, target->mutable_endpoint());
      if (!has_port.ok()) return has_port.status();
      if (!*has_port || target->endpoint().host().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "target \"", text, "\": give HOST:PORT ([IPV6]:PORT)"));
      }
      target->set_transport(args.udp ? sockagent::v1::TRANSPORT_UDP
                                     : sockagent::v1::TRANSPORT_TCP);
    }
    target->set_payload(payload);
    target->set_expect_echo(echo && !payload.empty());
    // One copy per target: the agent makes one TLS context per distinct
    // options and host, so the copies cost bytes on the wire only.
    if (tls_wanted) *target->mutable_tls() = tls;
  }
  return request;
}

std::string ResultWord(ProbeResult result) {
  switch (result) {
    case sockagent::v1::PROBE_RESULT_OK:
      return "OK";
    case sockagent::v1::PROBE_RESULT_REFUSED:
      return "REFUSED";
    case sockagent::v1::PROBE_RESULT_TIMEOUT:
      return "TIMEOUT";
    case sockagent::v1::PROBE_RESULT_UNREACHABLE:
      return "UNREACHABLE";
    case sockagent::v1::PROBE_RESULT_DNS:
      return "DNS";
    case sockagent::v1::PROBE_RESULT_TLS:
      return "TLS";
    default:
      return "ERROR";
  }
}

std::string Took(const google::protobuf::Duration& d) {
  if (d.seconds() == 0 && d.nanos() == 0) return "-";
  const absl::Duration took =
      absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  return absl::FormatDuration(absl::Trunc(took, absl::Microseconds(10)));
}

// With --ssl a HANDSHAKE column (connect to the TLS handshake's end) comes
// after CONNECT.
std::vector<std::string> Header(const ProbeArgs& args) {
  if (args.tls.ssl) {
    return {"TARGET",    "RESULT", "REMOTE", "CONNECT",
            "HANDSHAKE", "RTT",    "ERROR"};
  }
  return {"TARGET", "RESULT", "REMOTE", "CONNECT", "RTT", "ERROR"};
}

std::vector<std::vector<std::string>> Rows(const ProbeArgs& args,
                                           const ProbeResponse& response) {
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < response.outcomes_size(); ++i) {
    const auto& o = response.outcomes(i);
    std::vector<std::string> row = {
        i < static_cast<int>(args.targets.size()) ? args.targets[i] : "?",
        ResultWord(o.result()), o.remote(), Took(o.connect_time())};
    if (args.tls.ssl) row.push_back(Took(o.handshake_time()));
    row.push_back(Took(o.round_trip_time()));
    row.push_back(o.error());
    rows.push_back(std::move(row));
  }
  return rows;
}

bool AllOk(const ProbeResponse& response) {
  for (const auto& o : response.outcomes()) {
    if (o.result() != sockagent::v1::PROBE_RESULT_OK) return false;
  }
  return true;
}

// The call waits on the agent for the probes: its deadline covers the
// probe timeout (the whole call is bounded by the client's --timeout or
// more, whichever is longer).
grpc::Status CallProbe(AgentClient& client, const ProbeRequest& request,
                       ProbeResponse* response) {
  const absl::Duration per_probe = absl::Seconds(request.timeout().seconds()) +
                                   absl::Nanoseconds(request.timeout().nanos());
  const size_t concurrency =
      request.concurrency() == 0 ? 64 : request.concurrency();
  const size_t waves = (request.targets_size() + concurrency - 1) / concurrency;
  auto ctx = client.NewContext(per_probe * static_cast<double>(waves) +
                               absl::Seconds(2));
  return client.agent().Probe(ctx.get(), request, response);
}

int RunProbe(AgentClient& client, const ProbeArgs& args) {
  absl::StatusOr<ProbeRequest> request = BuildRequest(args);
  if (!request.ok()) return UsageError(request.status().message());
  ProbeResponse response;
  grpc::Status status = CallProbe(client, *request, &response);
  if (!status.ok()) return client.Fail(status);
  const OutputFormat format = client.options().output;
  if (format == OutputFormat::kJson || format == OutputFormat::kYaml) {
    if (!PrintStructured(std::cout, response, format)) return kExitFailure;
  } else {
    Table table(Header(args));
    for (auto& row : Rows(args, response)) table.AddRow(std::move(row));
    table.Print(std::cout);
  }
  return AllOk(response) ? kExitOk : kExitFailure;
}

int RunProbeOnEvery(Fleet& fleet, const ProbeArgs& args) {
  absl::StatusOr<ProbeRequest> request = BuildRequest(args);
  if (!request.ok()) return UsageError(request.status().message());
  return RunOnEveryAgent(
      fleet, Header(args), [&](AgentClient& client, AgentOutput& out) {
        auto response = std::make_unique<ProbeResponse>();
        grpc::Status s = CallProbe(client, *request, response.get());
        out.rows = Rows(args, *response);
        if (s.ok() && !AllOk(*response)) out.exit_code = kExitFailure;
        out.response = std::move(response);
        return s;
      });
}

}  // namespace

void AddProbeCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<ProbeArgs>();
  CLI::App* probe = app.add_subcommand(
      "probe",
      "Have the agent dial each TARGET (HOST:PORT) itself, all at once "
      "(Probe): connect (with --ssl also a TLS handshake), and with --echo "
      "send bytes and wait for them back; exit 1 unless every target "
      "answered OK");
  probe
      ->add_option("TARGET", args->targets,
                   "HOST:PORT or [IPV6]:PORT (with --unix: a socket path)")
      ->required();
  CLI::Option* udp = probe->add_flag(
      "--udp", args->udp,
      "UDP: send a datagram and wait for its echo (implies --echo)");
  probe
      ->add_flag("--unix", args->unix_paths,
                 "TARGETs are UNIX socket paths (@name: abstract)")
      ->excludes(udp);
  probe->add_flag("--echo", args->echo,
                  "Send DATA (default \"sockctl-probe\\n\") and wait until it "
                  "comes back byte for byte");
  probe
      ->add_option_function<std::string>(
          "--data",
          [args](const std::string& data) {
            args->data = data;
            args->data_given = true;
          },
          "Bytes to send once connected (as given)")
      ->type_name("DATA");
  probe
      ->add_option("--timeout-per-probe", args->timeout,
                   "Each probe connects (and echoes) within this (max 60s); "
                   "the call's deadline (--timeout) grows to cover them")
      ->capture_default_str();
  probe->add_option("--concurrency", args->concurrency,
                    "Probes in flight on the agent (0: 64, max 256)");
  // `client open`'s TLS flags: a TLS handshake after each TCP connect,
  // then the payload and its echo over TLS; RESULT TLS when it fails.
  AddClientTlsOptions(probe, args->tls);
  commands.push_back(
      {probe, [args](AgentClient& client) { return RunProbe(client, *args); },
       [args](Fleet& fleet) { return RunProbeOnEvery(fleet, *args); },
       kStructuredOutputs});
}

}  // namespace sockctl
