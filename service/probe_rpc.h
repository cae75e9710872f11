// The Probe RPC's service side: the request into an engine ProbeSpec (the
// engine's Prober checks the bounds and names the field), the report into
// the answer, and the reactor that cancels the probes when the caller goes
// away.
//
//   auto spec = ProbeSpecFromProto(*request, context->deadline());
//   if (!spec.ok()) return FinishNow(context, spec.status());
//   return StartProbe(engine, *std::move(spec), response);
#ifndef SOCKAGENT_SERVICE_PROBE_RPC_H_
#define SOCKAGENT_SERVICE_PROBE_RPC_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockagent {

// How long before the call's deadline the probes end and the answer goes
// out, so that it arrives while the caller still waits for it.
inline constexpr absl::Duration kProbeAnswerMargin = absl::Milliseconds(50);

// INVALID_ARGUMENT for an unknown transport, a port above 65535 or a
// negative timeout, naming the field ("targets[3].endpoint.port ...").
// `deadline` (the call's) bounds the whole probe call: the probes end
// kProbeAnswerMargin before it.
absl::StatusOr<ProbeSpec> ProbeSpecFromProto(
    const v1::ProbeRequest& request,
    std::chrono::system_clock::time_point deadline);

void ProbeReportToProto(const ProbeReport& in, v1::ProbeResponse* out);

// Starts the probes; the reactor finishes the call with the report, or
// the engine's refusal; a cancelled call cancels the probes.
grpc::ServerUnaryReactor* StartProbe(Engine& engine, ProbeSpec spec,
                                     v1::ProbeResponse* response);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_PROBE_RPC_H_
