#include "service/perf_rpc.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/convert.h"
#include "service/status_mapping.h"

namespace sockagent {
namespace {

// Finishes once, with the report or the refusal; a cancel that comes
// before the engine's token is known is replayed once it is.
class PerfReactor final : public grpc::ServerUnaryReactor {
 public:
  PerfReactor(Engine& engine, v1::PerfResponse* response)
      : engine_(engine), response_(response) {}

  void Start(PerfSpec spec) {
    const uint64_t token = engine_.Perf(
        std::move(spec), [this](absl::StatusOr<PerfReport> report) {
          if (report.ok()) PerfReportToProto(*report, response_);
          Finish(ToGrpcStatus(report.status()));
        });
    token_.store(token);
    if (cancelled_.load() && token != 0) engine_.CancelPerf(token);
    Unref();
  }

  void OnCancel() override {
    cancelled_.store(true);
    const uint64_t token = token_.load();
    if (token != 0) engine_.CancelPerf(token);
  }

  void OnDone() override { Unref(); }

 private:
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  Engine& engine_;
  v1::PerfResponse* const response_;
  std::atomic<uint64_t> token_{0};
  std::atomic<bool> cancelled_{false};
  std::atomic<int> refs_{2};  // Start() and OnDone().
};

}  // namespace

absl::StatusOr<PerfSpec> PerfSpecFromProto(
    const v1::PerfRequest& request,
    std::chrono::system_clock::time_point deadline) {
  PerfSpec spec;
  auto transport = TransportFromProto(request.transport());
  if (!transport.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("transport: ", transport.status().message()));
  }
  spec.transport = *transport;
  auto target = EndpointFromProto(request.target(), "target");
  if (!target.ok()) return target.status();
  spec.target = *std::move(target);
  if (request.has_duration()) {
    auto duration = DurationFromProto(request.duration(), "duration");
    if (!duration.ok()) return duration.status();
    spec.duration = *duration;
  }
  spec.bytes = request.bytes();
  spec.parallel = request.parallel();
  spec.udp_rate_bps = request.udp_rate_bits_per_sec();
  spec.udp_datagram_bytes = request.udp_datagram_bytes();
  spec.run_id = request.run_id();
  spec.deadline = absl::FromChrono(deadline);
  return spec;
}

void PerfReportToProto(const PerfReport& in, v1::PerfResponse* out) {
  out->set_run_id(in.run_id);
  for (const PerfStreamReport& s : in.streams) {
    v1::PerfStream* p = out->add_streams();
    SocketAddressToProto(s.local, p->mutable_local());
    SocketAddressToProto(s.remote, p->mutable_remote());
    p->set_bytes(s.bytes);
    p->set_datagrams(s.datagrams);
    p->set_send_errors(s.send_errors);
    DurationToProto(s.duration, p->mutable_duration());
    if (s.tcp.valid) {
      v1::PerfTcpInfo* t = p->mutable_tcp_info();
      DurationToProto(s.tcp.rtt, t->mutable_rtt());
      DurationToProto(s.tcp.rtt_var, t->mutable_rtt_var());
      t->set_retransmits(s.tcp.retransmits);
      t->set_snd_cwnd(s.tcp.snd_cwnd);
      t->set_snd_mss(s.tcp.snd_mss);
    }
    p->set_drained(s.drained);
    p->set_error(s.error);
  }
  out->set_bytes(in.bytes);
  out->set_datagrams(in.datagrams);
  DurationToProto(in.duration, out->mutable_duration());
}

grpc::ServerUnaryReactor* StartPerf(Engine& engine, PerfSpec spec,
                                    v1::PerfResponse* response) {
  auto* reactor = new PerfReactor(engine, response);
  reactor->Start(std::move(spec));
  return reactor;
}

}  // namespace sockagent
