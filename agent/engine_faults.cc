// EngineImpl's fault calls (engine.h): each takes the engine lock
// (PostWork) and hands over to the FaultStage (agent/fault_stage.h).
#include <string>
#include <utility>
#include <vector>

#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {

void EngineImpl::AddFault(FaultSpec spec,
                          Done<absl::StatusOr<FaultInfo>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec)](
                                Done<absl::StatusOr<FaultInfo>> d) mutable {
    AssertEngineLock();
    d(faults_.Add(std::move(spec)));
  });
}

void EngineImpl::UpdateFault(FaultSpec spec,
                             Done<absl::StatusOr<FaultInfo>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec)](
                                Done<absl::StatusOr<FaultInfo>> d) mutable {
    AssertEngineLock();
    d(faults_.Update(std::move(spec)));
  });
}

void EngineImpl::RemoveFaults(
    std::string name, Labels selector, bool all,
    Done<absl::StatusOr<std::vector<std::string>>> done) {
  PostWork(std::move(done),
           [this, name = std::move(name), selector = std::move(selector),
            all](Done<absl::StatusOr<std::vector<std::string>>> d) {
             AssertEngineLock();
             d(faults_.Remove(name, selector, all));
           });
}

void EngineImpl::ListFaults(Done<absl::StatusOr<std::vector<FaultInfo>>> done) {
  PostWork(std::move(done),
           [this](Done<absl::StatusOr<std::vector<FaultInfo>>> d) {
             AssertEngineLock();
             d(faults_.List());
           });
}

}  // namespace engine_internal
}  // namespace sockagent
