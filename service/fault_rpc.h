// The fault RPCs' conversions (AddFault, UpdateFault, RemoveFault,
// ListFaults): the proto Fault into the engine's FaultSpec and back. The
// engine (agent/faults.h) checks the parameters and names the field; here
// only what the proto can hold and the engine cannot (a missing type, an
// unknown enum value, a negative Duration) is refused, also naming it.
//
//   auto spec = FaultSpecFromProto(request->fault());
//   if (!spec.ok()) return FinishNow(context, spec.status());
//   engine.AddFault(*std::move(spec), done);   // then FaultInfoToProto
#ifndef SOCKAGENT_SERVICE_FAULT_RPC_H_
#define SOCKAGENT_SERVICE_FAULT_RPC_H_

#include "absl/status/statusor.h"
#include "agent/faults.h"
#include "sockagent/v1/agent.pb.h"

namespace sockagent {

// INVALID_ARGUMENT "fault: a type is required (latency, bandwidth, ...)",
// "fault.direction: unknown value N", "fault.latency.jitter must not be
// negative".
absl::StatusOr<FaultSpec> FaultSpecFromProto(const v1::Fault& fault);
void FaultInfoToProto(const FaultInfo& in, v1::Fault* out);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_FAULT_RPC_H_
