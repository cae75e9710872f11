// One probe of `sockctl matrix`: see matrix_probe.h.
#include "cli/matrix_probe.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/matrix.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::CloseConnectionRequest;
using sockagent::v1::CloseConnectionResponse;
using sockagent::v1::OpenClientRequest;
using sockagent::v1::OpenClientResponse;
using sockagent::v1::ReceiveRequest;
using sockagent::v1::ReceiveResponse;
using sockagent::v1::SendRequest;
using sockagent::v1::SendResponse;

// How much of a wrong echo a message quotes.
constexpr size_t kQuoteBytes = 40;

// Sets the cell from a failed call of the probe.
void Failed(const ProbeRun& run, MatrixCell& cell, ProbeStep step,
            const grpc::Status& status, const AgentClient& source) {
  const CallFailure failure = source.Describe(status);
  if (failure.unreachable) {
    cell.result = ProbeResult::kError;
    cell.message = absl::StrCat("cannot reach agent ", run.agents[cell.src],
                                ": ", failure.message);
    return;
  }
  cell.result =
      ClassifyFailure(step, static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
  const char* what = step == ProbeStep::kOpen   ? "open"
                     : step == ProbeStep::kSend ? "send"
                                                : "receive";
  cell.message = absl::StrCat(what, ": ", failure.code, ": ", failure.message);
}

void ExchangePayload(const ProbeRun& run, MatrixCell& cell, AgentClient& source,
                     const std::string& id) {
  if (run.interrupt->raised()) {
    cell.message = "interrupted";
    return;
  }
  const std::string payload =
      ProbePayload(run.run, run.agents[cell.src], run.agents[cell.dst],
                   cell.transport, cell.attempts);
  SendRequest send;
  send.set_connection_id(id);
  send.set_data(payload);
  SendResponse sent;
  const absl::Time start = absl::Now();
  auto send_ctx = source.NewContext();
  grpc::Status s = source.agent().Send(send_ctx.get(), send, &sent);
  if (!s.ok()) {
    Failed(run, cell, ProbeStep::kSend, s, source);
    return;
  }

  ReceiveRequest receive;
  receive.set_connection_id(id);
  ToProto(run.per_probe, receive.mutable_wait());
  if (cell.transport == ProbeTransport::kTcp) {
    receive.set_min_bytes(static_cast<uint32_t>(payload.size()));
    receive.set_max_bytes(static_cast<uint32_t>(payload.size()));
  } else {
    receive.set_max_datagrams(1);
  }
  ReceiveResponse received;
  auto receive_ctx = source.NewContext(run.per_probe + kWaitSlack);
  s = source.agent().Receive(receive_ctx.get(), receive, &received);
  const absl::Duration rtt = absl::Now() - start;
  if (!s.ok()) {
    Failed(run, cell, ProbeStep::kReceive, s, source);
    return;
  }
  const std::string& echo = received.datagrams_size() > 0
                                ? received.datagrams(0).data()
                                : received.data();
  if (echo.empty() && !received.end_of_stream()) {
    cell.result = ProbeResult::kTimeout;
    cell.message =
        absl::StrCat("no echo within ", absl::FormatDuration(run.per_probe));
  } else if (echo != payload) {
    cell.message =
        received.end_of_stream() && echo.size() < payload.size()
            ? absl::StrCat("connection closed after ", echo.size(), " of ",
                           payload.size(), " bytes of the echo")
            : absl::StrCat("the echo differs: \"",
                           absl::CHexEscape(echo.substr(0, kQuoteBytes)),
                           echo.size() > kQuoteBytes ? "..." : "", "\"");
  } else {
    cell.result = ProbeResult::kOk;
    cell.rtt = rtt;
    cell.message.clear();
  }
}

// Abort: no TIME_WAIT left behind on the source, nothing to flush.
// Failures are left to Cleanup's close by label.
void CloseQuietly(AgentClient& source, const std::string& id) {
  CloseConnectionRequest close;
  close.set_id(id);
  close.set_mode(sockagent::v1::CLOSE_MODE_ABORT);
  CloseConnectionResponse closed;
  auto ctx = source.NewContext();
  (void)source.agent().CloseConnection(ctx.get(), close, &closed);
}

}  // namespace

sockagent::v1::Transport ToApi(ProbeTransport transport) {
  return transport == ProbeTransport::kUdp ? sockagent::v1::TRANSPORT_UDP
                                           : sockagent::v1::TRANSPORT_TCP;
}

EchoServer DialTarget(const sockagent::v1::Server& server,
                      const std::string& dial_host) {
  EchoServer target;
  target.started = true;
  const auto& addresses = server.local_addresses();
  if (addresses.empty()) return target;
  target.port = addresses[0].port();
  bool same_port = true;
  for (const auto& a : addresses) same_port &= a.port() == target.port;
  if (same_port) return target;
  const sockagent::v1::Family want = dial_host.find(':') != std::string::npos
                                         ? sockagent::v1::FAMILY_IPV6
                                         : sockagent::v1::FAMILY_IPV4;
  for (const auto& a : addresses) {
    if (a.family() == want) {
      target.port = a.port();
      target.family = want;
      break;
    }
  }
  return target;
}

// One probe: connect from the source agent to the destination's echo
// server, send the payload, wait for it to come back, close.
bool ProbeCell(const ProbeRun& run, AgentClient& source,
               const EchoServer& target, MatrixCell& cell) {
  ++cell.attempts;
  cell.rtt = absl::ZeroDuration();
  cell.result = ProbeResult::kError;
  if (run.interrupt->raised()) {
    cell.message = "interrupted";
    return false;
  }
  if (!target.started) {
    cell.message = target.error;
    return false;
  }
  const bool tls =
      !run.tls_ca_pem.empty() && cell.transport == ProbeTransport::kTcp;
  // Connect, then (TLS) the handshake: each may take per_probe.
  const absl::Duration call_time = (tls ? 2 : 1) * run.per_probe + kWaitSlack;

  OpenClientRequest open;
  open.set_transport(ToApi(cell.transport));
  open.mutable_remote()->set_host(run.dial_hosts[cell.dst]);
  open.mutable_remote()->set_port(target.port);
  open.set_family(target.family);
  // The probe is one small write: do not let Nagle hold it back.
  open.set_tcp_nodelay(cell.transport == ProbeTransport::kTcp);
  ToProto(run.per_probe, open.mutable_connect_timeout());
  if (tls) {
    // No server_name: the dialled host is the name verified, as an IP
    // address or a DNS name, like the SAN the run's CA wrote.
    sockagent::v1::TlsClientOptions* t = open.mutable_tls();
    t->set_ca_pem(run.tls_ca_pem);
    ToProto(run.per_probe, t->mutable_handshake_timeout());
    if (cell.src < run.client_certs.size()) {
      t->set_certificate_chain_pem(run.client_certs[cell.src].certificate_pem);
      t->set_private_key_pem(run.client_certs[cell.src].private_key_pem);
    }
  }
  (*open.mutable_labels())[run.label] = run.run;
  // Closed right after the probe; the TTL covers a sockctl that died.
  ToProto(2 * run.per_probe + absl::Minutes(1), open.mutable_ttl());
  OpenClientResponse opened;
  auto open_ctx = source.NewContext(call_time);
  grpc::Status s = source.agent().OpenClient(open_ctx.get(), open, &opened);
  const bool reached = s.ok() || !source.Describe(s).unreachable;
  if (!s.ok()) {
    Failed(run, cell, ProbeStep::kOpen, s, source);
    return reached;
  }
  const std::string& id = opened.connection().id();
  ExchangePayload(run, cell, source, id);
  CloseQuietly(source, id);
  return reached;
}

}  // namespace sockctl
