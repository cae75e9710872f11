// BufferBudget: the agent-wide bound on buffered bytes
// (EngineOptions::max_total_buffered_bytes), with high/low watermarks in the
// manner of Envoy's WatermarkBuffer.
//
// Owns: the total of every connection's charge (Conn::charged: buffered
// payload plus kDatagramOverheadBytes per queued datagram), the part of it
// held by the closed history (at most a quarter of the bound), and the list
// of connections whose reading stopped at the bound.
//   - High watermark: the bound itself. A reader that finds Room() == 0
//     stops reading and calls Pause(num).
//   - Low watermark: three quarters of the bound. When a charge falls and
//     the total is at or below it, the budget fires `post_resume` (once
//     until ResumePaused runs), and ResumePaused fires `resume(num)` for
//     every paused connection.
//   - History share: when the history's bytes exceed a quarter of the
//     bound, the budget fires `history_full` (the engine posts a trim).
// The budget never touches a connection: the hooks do.
//
// Lock: none of its own; every call runs under the engine lock. Hooks are
// called inline, under it. Hot path (Recharge, Room) is inline arithmetic;
// the hooks run only when a watermark is crossed.
//
// Example:
//   if (budget.Room() == 0) budget.Pause(c.num);          // reader
//   budget.Recharge(was, now, c.finalized);                // after a change
#ifndef SOCKAGENT_AGENT_BUFFER_BUDGET_H_
#define SOCKAGENT_AGENT_BUFFER_BUDGET_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sockagent {
namespace engine_internal {

class BufferBudget final {
 public:
  struct Hooks {
    // Must arrange for ResumePaused() to run soon, from a fresh call stack
    // (the engine posts it to the loop).
    std::function<void()> post_resume;
    // Reading of connection `num` may go on (it was Pause'd).
    std::function<void(uint64_t num)> resume;
    // The closed history holds more than its share: trim it.
    std::function<void()> history_full;
  };

  // `cap`: max_total_buffered_bytes, above 0.
  BufferBudget(uint64_t cap, Hooks hooks);
  BufferBudget(const BufferBudget&) = delete;
  BufferBudget& operator=(const BufferBudget&) = delete;

  uint64_t cap() const { return cap_; }
  uint64_t total() const { return total_; }
  uint64_t history() const { return history_; }
  // What the closed history may hold: a quarter of the bound.
  uint64_t history_cap() const { return cap_ / 4; }
  // Bytes the bound still admits.
  uint64_t Room() const { return total_ >= cap_ ? 0 : cap_ - total_; }
  // ResourceExhausted naming max_total_buffered_bytes if `more` bytes do
  // not fit; `what` starts the message ("send conn-4").
  absl::Status CheckRoom(absl::string_view what, uint64_t more) const;

  // A connection's charge changed from `was` to `now` (`in_history`: its
  // record is finalized). Fires post_resume / history_full as needed.
  void Recharge(uint64_t was, uint64_t now, bool in_history) {
    total_ = total_ - was + now;
    if (in_history) history_ = history_ - was + now;
    if (now < was && !paused_.empty()) MaybeResume();
    if (in_history && history_ > history_cap()) hooks_.history_full();
  }
  // A connection with `charged` bytes was finalized: they now belong to the
  // closed history too.
  void MoveToHistory(uint64_t charged) { history_ += charged; }
  // A history record with `charged` bytes was erased.
  void Forget(uint64_t charged) {
    total_ -= charged;
    history_ -= charged;
  }

  // Reading of `num` stopped at the bound; the caller lists each
  // connection once (Conn::total_paused).
  void Pause(uint64_t num) { paused_.push_back(num); }
  size_t paused() const { return paused_.size(); }
  // Fires resume(num) for every paused connection (they pause again if the
  // bound is still reached). Runs from post_resume.
  void ResumePaused();

 private:
  void MaybeResume();

  const uint64_t cap_;
  const Hooks hooks_;
  uint64_t total_ = 0;
  uint64_t history_ = 0;  // The part of total_ in finalized records.
  std::vector<uint64_t> paused_;
  bool resume_posted_ = false;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_BUFFER_BUDGET_H_
