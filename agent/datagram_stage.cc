// DatagramStage (agent/datagram_stage.h): per-datagram drop, duplicate and
// delay decisions, and the held datagrams.
#include "agent/datagram_stage.h"

#include <algorithm>
#include <utility>

#include "absl/time/time.h"

namespace sockagent {

void DatagramStage::Add(ActiveFault fault) {
  for (ActiveFault& f : faults_) {
    if (f.fault_id != fault.fault_id) continue;
    if (f.spec.type == fault.spec.type) {
      f.spec = std::move(fault.spec);  // Update: keep the generator going.
    } else {
      f = std::move(fault);
    }
    return;
  }
  faults_.push_back(std::move(fault));
}

bool DatagramStage::Remove(uint64_t fault_id) {
  auto it = std::find_if(
      faults_.begin(), faults_.end(),
      [fault_id](const ActiveFault& f) { return f.fault_id == fault_id; });
  if (it == faults_.end()) return false;
  faults_.erase(it);
  return true;
}

bool DatagramStage::has_delay() const {
  return std::any_of(faults_.begin(), faults_.end(), [](const ActiveFault& f) {
    return f.spec.type == FaultType::kDelay;
  });
}

DatagramStage::Verdict DatagramStage::Decide(int64_t now_ns) {
  Verdict v;
  bool duplicate = false;
  int64_t delay_ns = 0;
  for (ActiveFault& f : faults_) {
    switch (f.spec.type) {
      case FaultType::kDrop:
        if (f.random.Uniform() < f.spec.probability && v.dropped_by == nullptr)
          v.dropped_by = &f;
        break;
      case FaultType::kDuplicate:
        if (f.random.Uniform() < f.spec.probability) duplicate = true;
        break;
      case FaultType::kDelay: {
        const int64_t d =
            absl::ToInt64Nanoseconds(f.spec.delay) +
            f.random.Spread(absl::ToInt64Nanoseconds(f.spec.jitter));
        delay_ns = std::max(delay_ns, d);
        break;
      }
      default:
        break;  // Stream faults never reach a DatagramStage.
    }
  }
  if (v.dropped_by != nullptr) {
    v.copies = 0;
    return v;
  }
  v.copies = duplicate ? 2 : 1;
  if (delay_ns > 0) v.due_ns = now_ns + delay_ns;
  return v;
}

void DatagramStage::Hold(int64_t due_ns, std::string data) {
  held_bytes_ += data.size();
  held_.emplace(due_ns, std::move(data));
}

std::vector<std::string> DatagramStage::TakeDue(int64_t now_ns, bool all) {
  std::vector<std::string> out;
  auto end = all ? held_.end() : held_.upper_bound(now_ns);
  for (auto it = held_.begin(); it != end; ++it) {
    held_bytes_ -= it->second.size();
    out.push_back(std::move(it->second));
  }
  held_.erase(held_.begin(), end);
  return out;
}

int64_t DatagramStage::next_due_ns() const {
  return held_.empty() ? 0 : held_.begin()->first;
}

}  // namespace sockagent
