// BufferBudget: the agent-wide byte bound and its watermarks (see
// buffer_budget.h).
#include "agent/buffer_budget.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace sockagent {
namespace engine_internal {

BufferBudget::BufferBudget(uint64_t cap, Hooks hooks)
    : cap_(cap), hooks_(std::move(hooks)) {}

absl::Status BufferBudget::CheckRoom(absl::string_view what,
                                     uint64_t more) const {
  if (more <= Room()) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat(what, ": the agent's buffers are full: ", total_,
                   " bytes buffered in all connections, ", more,
                   " more would exceed max_total_buffered_bytes (", cap_,
                   "); retry after they drain"));
}

void BufferBudget::MaybeResume() {
  // Low watermark: three quarters of the bound, so a connection resumed
  // does not pause again at the next read.
  if (resume_posted_ || total_ > cap_ - cap_ / 4) return;
  resume_posted_ = true;
  hooks_.post_resume();
}

void BufferBudget::ResumePaused() {
  resume_posted_ = false;
  std::vector<uint64_t> nums;
  nums.swap(paused_);
  for (uint64_t num : nums) hooks_.resume(num);
}

}  // namespace engine_internal
}  // namespace sockagent
