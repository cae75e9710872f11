// The Perf RPC's service side: the request into an engine PerfSpec (the
// engine's PerfRunner checks the bounds and names the field), the report
// into the answer, and the reactor that cancels the run when the caller
// goes away (or its deadline passes).
//
//   auto spec = PerfSpecFromProto(*request, context->deadline());
//   if (!spec.ok()) return FinishNow(context, spec.status());
//   return StartPerf(engine, *std::move(spec), response);
#ifndef SOCKAGENT_SERVICE_PERF_RPC_H_
#define SOCKAGENT_SERVICE_PERF_RPC_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/status/statusor.h"
#include "agent/engine.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockagent {

// INVALID_ARGUMENT for an unknown transport, a bad target (port above
// 65535) or a negative duration, naming the field ("target.port ...").
// `deadline` (the call's) ends the writing at the latest.
absl::StatusOr<PerfSpec> PerfSpecFromProto(
    const v1::PerfRequest& request,
    std::chrono::system_clock::time_point deadline);

void PerfReportToProto(const PerfReport& in, v1::PerfResponse* out);

// Starts the run; the reactor finishes the call with the report, or the
// engine's refusal; a cancelled call cancels the run.
grpc::ServerUnaryReactor* StartPerf(Engine& engine, PerfSpec spec,
                                    v1::PerfResponse* response);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_PERF_RPC_H_
