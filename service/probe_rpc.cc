#include "service/probe_rpc.h"

#include <atomic>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/convert.h"
#include "service/status_mapping.h"

namespace sockagent {
namespace {

v1::ProbeResult ResultToProto(ProbeClass c) {
  switch (c) {
    case ProbeClass::kOk:
      return v1::PROBE_RESULT_OK;
    case ProbeClass::kRefused:
      return v1::PROBE_RESULT_REFUSED;
    case ProbeClass::kTimeout:
      return v1::PROBE_RESULT_TIMEOUT;
    case ProbeClass::kUnreachable:
      return v1::PROBE_RESULT_UNREACHABLE;
    case ProbeClass::kDns:
      return v1::PROBE_RESULT_DNS;
    case ProbeClass::kTls:
      return v1::PROBE_RESULT_TLS;
    case ProbeClass::kError:
      break;
  }
  return v1::PROBE_RESULT_ERROR;
}

// Finishes once, with the report or the refusal; a cancel that comes
// before the engine's token is known is replayed once it is.
class ProbeReactor final : public grpc::ServerUnaryReactor {
 public:
  ProbeReactor(Engine& engine, v1::ProbeResponse* response)
      : engine_(engine), response_(response) {}

  void Start(ProbeSpec spec) {
    const uint64_t token = engine_.Probe(
        std::move(spec), [this](absl::StatusOr<ProbeReport> report) {
          if (report.ok()) ProbeReportToProto(*report, response_);
          Finish(ToGrpcStatus(report.status()));
        });
    token_.store(token);
    if (cancelled_.load() && token != 0) engine_.CancelProbe(token);
    Unref();
  }

  void OnCancel() override {
    cancelled_.store(true);
    const uint64_t token = token_.load();
    if (token != 0) engine_.CancelProbe(token);
  }

  void OnDone() override { Unref(); }

 private:
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  Engine& engine_;
  v1::ProbeResponse* const response_;
  std::atomic<uint64_t> token_{0};
  std::atomic<bool> cancelled_{false};
  std::atomic<int> refs_{2};  // Start() and OnDone().
};

}  // namespace

absl::StatusOr<ProbeSpec> ProbeSpecFromProto(
    const v1::ProbeRequest& request,
    std::chrono::system_clock::time_point deadline) {
  ProbeSpec spec;
  spec.targets.reserve(request.targets_size());
  for (int i = 0; i < request.targets_size(); ++i) {
    const v1::ProbeTarget& in = request.targets(i);
    const std::string field = absl::StrCat("targets[", i, "]");
    ProbeTarget& out = spec.targets.emplace_back();
    auto transport = TransportFromProto(in.transport());
    if (!transport.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", transport.status().message()));
    }
    out.transport = *transport;
    auto endpoint =
        EndpointFromProto(in.endpoint(), absl::StrCat(field, ".endpoint"));
    if (!endpoint.ok()) return endpoint.status();
    out.endpoint = *std::move(endpoint);
    out.payload = in.payload();
    out.expect_echo = in.expect_echo();
    if (in.has_tls()) {
      // Checked here field by field; the Prober makes the contexts (one
      // per distinct spec and host) and checks the PEM and the transport.
      absl::StatusOr<TlsClientSpec> tls = TlsClientSpecFromProto(in.tls());
      if (!tls.ok()) {
        return absl::Status(tls.status().code(),
                            absl::StrCat(field, ".", tls.status().message()));
      }
      out.tls = *std::move(tls);
    }
  }
  if (request.has_timeout()) {
    auto timeout = DurationFromProto(request.timeout(), "timeout");
    if (!timeout.ok()) return timeout.status();
    spec.timeout = *timeout;
  } else {
    spec.timeout = absl::ZeroDuration();  // The prober's default.
  }
  spec.concurrency = request.concurrency();
  // The probes end a little before the caller's deadline, so that their
  // outcomes (TIMEOUT for what was still running) reach the caller in time
  // instead of a bare DEADLINE_EXCEEDED.
  spec.deadline = absl::FromChrono(deadline) - kProbeAnswerMargin;
  return spec;
}

void ProbeReportToProto(const ProbeReport& in, v1::ProbeResponse* out) {
  for (const ProbeOutcome& o : in.outcomes) {
    v1::ProbeOutcome* p = out->add_outcomes();
    p->set_result(ResultToProto(o.result));
    p->set_remote(o.remote);
    DurationToProto(o.connect_time, p->mutable_connect_time());
    DurationToProto(o.round_trip, p->mutable_round_trip_time());
    if (o.handshake_time > absl::ZeroDuration()) {
      DurationToProto(o.handshake_time, p->mutable_handshake_time());
    }
    p->set_bytes_sent(o.bytes_sent);
    p->set_bytes_received(o.bytes_received);
    p->set_error(o.error);
  }
  DurationToProto(in.took, out->mutable_elapsed());
}

grpc::ServerUnaryReactor* StartProbe(Engine& engine, ProbeSpec spec,
                                     v1::ProbeResponse* response) {
  auto* reactor = new ProbeReactor(engine, response);
  reactor->Start(std::move(spec));
  return reactor;
}

}  // namespace sockagent
