#include "agent/faults.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sockagent {
namespace {

constexpr struct {
  FaultType type;
  const char* name;
} kTypeNames[] = {
    {FaultType::kLatency, "latency"},
    {FaultType::kBandwidth, "bandwidth"},
    {FaultType::kSlicer, "slicer"},
    {FaultType::kLimitData, "limit_data"},
    {FaultType::kResetPeer, "reset_peer"},
    {FaultType::kTimeout, "timeout"},
    {FaultType::kSlowClose, "slow_close"},
    {FaultType::kDrop, "drop"},
    {FaultType::kDuplicate, "duplicate"},
    {FaultType::kDelay, "delay"},
};

// Bandwidth: how much sending may burst after an idle spell. Also how late
// a wake may come (a busy loop) before tokens are lost: 100 ms keeps the
// rate within 1 % on a loaded 2-core machine, where 20 ms lost 11 %.
constexpr double kBurstSeconds = 0.1;

bool IsNameChar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
}

absl::Status CheckName(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("fault.name is required");
  }
  if (name.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fault.name is ", name.size(), " bytes; at most 63 allowed"));
  }
  for (char ch : name) {
    if (!IsNameChar(ch)) {
      return absl::InvalidArgumentError(
          "fault.name must be a DNS label: lower-case letters, digits and "
          "'-', starting and ending with a letter or digit");
    }
  }
  if (name.front() == '-' || name.back() == '-') {
    return absl::InvalidArgumentError(
        "fault.name must start and end with a letter or digit");
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(absl::Duration d, absl::string_view field) {
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("fault.", field, " must be >= 0"));
  }
  if (d > kMaxFaultDuration) {
    return absl::InvalidArgumentError(
        absl::StrCat("fault.", field,
                     " must be <= ", absl::FormatDuration(kMaxFaultDuration)));
  }
  return absl::OkStatus();
}

absl::Status CheckProbability(double p, absl::string_view field) {
  if (!(p >= 0.0 && p <= 1.0)) {  // NaN fails too.
    return absl::InvalidArgumentError(
        absl::StrCat("fault.", field, " must be between 0 and 1"));
  }
  return absl::OkStatus();
}

absl::Status CheckParameters(const FaultSpec& s) {
  switch (s.type) {
    case FaultType::kLatency:
      if (absl::Status st = CheckDuration(s.latency, "latency.latency");
          !st.ok())
        return st;
      return CheckDuration(s.jitter, "latency.jitter");
    case FaultType::kBandwidth:
      if (s.rate_bytes_per_second == 0 ||
          s.rate_bytes_per_second > kMaxFaultRate) {
        return absl::InvalidArgumentError(absl::StrCat(
            "fault.bandwidth.rate_bytes_per_second must be between 1 and ",
            kMaxFaultRate));
      }
      return absl::OkStatus();
    case FaultType::kSlicer:
      if (s.average_size == 0 || s.average_size > kMaxSliceBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("fault.slicer.average_size must be between 1 and ",
                         kMaxSliceBytes));
      }
      if (s.size_variation >= s.average_size) {
        return absl::InvalidArgumentError(
            "fault.slicer.size_variation must be below "
            "fault.slicer.average_size");
      }
      return CheckDuration(s.delay, "slicer.delay");
    case FaultType::kLimitData:
      if (s.bytes > kMaxLimitDataBytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "fault.limit_data.bytes must be <= ", kMaxLimitDataBytes));
      }
      return absl::OkStatus();
    case FaultType::kResetPeer:
      return CheckDuration(s.timeout, "reset_peer.timeout");
    case FaultType::kTimeout:
      return CheckDuration(s.timeout, "timeout.timeout");
    case FaultType::kSlowClose:
      return CheckDuration(s.delay, "slow_close.delay");
    case FaultType::kDrop:
      return CheckProbability(s.probability, "drop.probability");
    case FaultType::kDuplicate:
      return CheckProbability(s.probability, "duplicate.probability");
    case FaultType::kDelay:
      if (absl::Status st = CheckDuration(s.delay, "delay.delay"); !st.ok())
        return st;
      return CheckDuration(s.jitter, "delay.jitter");
  }
  return absl::InvalidArgumentError("fault: a type is required");
}

int64_t Ns(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

void Earliest(int64_t* wake, int64_t at) {
  if (at > 0 && (*wake == 0 || at < *wake)) *wake = at;
}

}  // namespace

const char* FaultTypeName(FaultType type) {
  for (const auto& t : kTypeNames) {
    if (t.type == type) return t.name;
  }
  return "unknown";
}

std::optional<FaultType> FaultTypeFromName(absl::string_view name) {
  for (const auto& t : kTypeNames) {
    if (name == t.name) return t.type;
  }
  return std::nullopt;
}

bool IsDatagramFault(FaultType type) {
  return type == FaultType::kDrop || type == FaultType::kDuplicate ||
         type == FaultType::kDelay;
}

const char* FaultDirectionName(FaultDirection d) {
  switch (d) {
    case FaultDirection::kSent:
      return "sent";
    case FaultDirection::kReceived:
      return "received";
    case FaultDirection::kUpstream:
      return "upstream";
    case FaultDirection::kDownstream:
      return "downstream";
  }
  return "sent";
}

absl::Status ValidateFaultSpec(const FaultSpec& spec) {
  if (absl::Status s = CheckName(spec.name); !s.ok()) return s;
  if (absl::Status s = CheckProbability(spec.toxicity, "toxicity"); !s.ok()) {
    return s;
  }
  const FaultTarget& t = spec.target;
  const int targets = (t.server_id.empty() ? 0 : 1) +
                      (t.connection_id.empty() ? 0 : 1) +
                      (t.selector.empty() ? 0 : 1);
  if (targets != 1) {
    return absl::InvalidArgumentError(
        "fault.target needs exactly one of server_id, connection_id, "
        "label_selector");
  }
  if (absl::Status s = CheckLabels(t.selector, "fault.target.label_selector");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckLabels(spec.labels, "fault.labels"); !s.ok()) {
    return s;
  }
  return CheckParameters(spec);
}

uint64_t FaultRandom::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double FaultRandom::Uniform() {
  return static_cast<double>(Next() >> 11) * 0x1.0p-53;
}

int64_t FaultRandom::Spread(int64_t spread) {
  if (spread <= 0) return 0;
  const uint64_t width = static_cast<uint64_t>(spread) * 2 + 1;
  return static_cast<int64_t>(Next() % width) - spread;
}

uint64_t MixSeed(uint64_t seed, absl::string_view name, uint64_t conn_num) {
  uint64_t h = seed ^ 0xcbf29ce484222325ULL;
  for (char ch : name) {
    h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
  }
  FaultRandom r(h ^ (conn_num * 0x9e3779b97f4a7c15ULL));
  return r.Next();
}

bool RollToxicity(double toxicity, uint64_t seed, absl::string_view name,
                  uint64_t conn_num) {
  if (toxicity >= 1.0) return true;
  if (toxicity <= 0.0) return false;
  FaultRandom r(MixSeed(seed, name, conn_num) ^ 0x70c1c17e);
  return r.Uniform() < toxicity;
}

// ---- SendStage

void SendStage::Add(ActiveFault fault, uint64_t queued_end, int64_t now_ns) {
  Observe(queued_end, now_ns);  // Bytes queued before it pass undelayed.
  for (ActiveFault& f : faults_) {
    if (f.fault_id != fault.fault_id) continue;
    if (f.spec.type == fault.spec.type) {
      f.spec = std::move(fault.spec);  // Update: keep counters and tokens.
    } else {
      f = std::move(fault);
      f.tokens_ns = now_ns;
      f.next_slice_ns = now_ns;
    }
    return;
  }
  fault.tokens_ns = now_ns;
  fault.next_slice_ns = now_ns;
  faults_.push_back(std::move(fault));
}

bool SendStage::Remove(uint64_t fault_id) {
  auto it = std::find_if(
      faults_.begin(), faults_.end(),
      [fault_id](const ActiveFault& f) { return f.fault_id == fault_id; });
  if (it == faults_.end()) return false;
  faults_.erase(it);
  const bool latency = std::any_of(
      faults_.begin(), faults_.end(),
      [](const ActiveFault& f) { return f.spec.type == FaultType::kLatency; });
  if (!latency) marks_.clear();  // Everything delayed may leave now.
  return true;
}

void SendStage::Observe(uint64_t queued_end, int64_t now_ns) {
  if (queued_end <= observed_) return;
  observed_ = queued_end;
  int64_t delay = 0;
  bool latency = false;
  for (ActiveFault& f : faults_) {
    if (f.spec.type != FaultType::kLatency) continue;
    latency = true;
    delay += Ns(f.spec.latency) + f.random.Spread(Ns(f.spec.jitter));
  }
  if (!latency) return;
  int64_t release = now_ns + std::max<int64_t>(delay, 0);
  // Jitter never reorders: a mark never leaves before the one before it.
  if (!marks_.empty()) release = std::max(release, marks_.back().release_ns);
  if (marks_.size() >= kMaxLatencyMarks) {
    marks_.back().end = queued_end;
    marks_.back().release_ns = release;
    return;
  }
  marks_.push_back(Mark{queued_end, release});
}

SendStage::Decision SendStage::Decide(uint64_t queued_end, int64_t now_ns) {
  Observe(queued_end, now_ns);
  Decision d;
  const uint64_t queued = queued_end > written_ ? queued_end - written_ : 0;
  uint64_t allowed = queued;
  while (!marks_.empty() && marks_.front().end <= written_) marks_.pop_front();
  for (ActiveFault& f : faults_) {
    switch (f.spec.type) {
      case FaultType::kLatency: {
        uint64_t limit = written_;
        for (const Mark& m : marks_) {
          if (m.release_ns > now_ns) {
            Earliest(&d.wake_ns, m.release_ns);
            break;
          }
          limit = m.end;
        }
        allowed = std::min(allowed, limit - written_);
        break;
      }
      case FaultType::kBandwidth: {
        const double rate = static_cast<double>(f.spec.rate_bytes_per_second);
        const double burst = std::max(rate * kBurstSeconds, 1.0);
        const int64_t elapsed = std::max<int64_t>(now_ns - f.tokens_ns, 0);
        f.tokens = std::min(burst, f.tokens + rate * elapsed * 1e-9);
        f.tokens_ns = now_ns;
        const uint64_t whole = static_cast<uint64_t>(f.tokens);
        allowed = std::min(allowed, whole);
        if (queued > whole) {
          // Wake when a useful amount (10 ms worth, or what is queued) is
          // there, not for every byte.
          const double want =
              std::min(static_cast<double>(queued), std::max(burst / 10, 1.0));
          const double missing = std::max(want - f.tokens, 1.0);
          Earliest(&d.wake_ns,
                   now_ns + static_cast<int64_t>(missing / rate * 1e9) + 1);
        }
        break;
      }
      case FaultType::kSlicer:
        if (queued == 0) break;
        if (now_ns < f.next_slice_ns) {
          allowed = 0;
          Earliest(&d.wake_ns, f.next_slice_ns);
          break;
        }
        if (f.slice_left == 0) {
          const int64_t size =
              static_cast<int64_t>(f.spec.average_size) +
              f.random.Spread(static_cast<int64_t>(f.spec.size_variation));
          f.slice_left = static_cast<uint64_t>(std::max<int64_t>(size, 1));
        }
        allowed = std::min(allowed, f.slice_left);
        break;
      case FaultType::kLimitData: {
        const uint64_t left =
            f.written < f.spec.bytes ? f.spec.bytes - f.written : 0;
        allowed = std::min(allowed, left);
        if (left == 0) {
          d.discard = true;
          if (!f.acted) {
            f.acted = true;
            d.action = Action::kClose;
            d.why = absl::StrCat("fault ", f.spec.name, ": limit_data of ",
                                 f.spec.bytes, " bytes reached");
          }
        }
        break;
      }
      case FaultType::kResetPeer: {
        const int64_t due = f.applied_ns + Ns(f.spec.timeout);
        if (now_ns >= due) {
          if (!f.acted) {
            f.acted = true;
            d.action = Action::kReset;
            d.why = absl::StrCat("fault ", f.spec.name, ": reset_peer after ",
                                 absl::FormatDuration(f.spec.timeout));
          }
        } else {
          Earliest(&d.wake_ns, due);
        }
        break;
      }
      case FaultType::kTimeout: {
        allowed = 0;
        d.discard = true;
        if (f.spec.timeout <= absl::ZeroDuration()) break;  // Blackhole.
        const int64_t due = f.applied_ns + Ns(f.spec.timeout);
        if (now_ns >= due) {
          if (!f.acted) {
            f.acted = true;
            d.action = Action::kClose;
            d.why = absl::StrCat("fault ", f.spec.name, ": timeout after ",
                                 absl::FormatDuration(f.spec.timeout));
          }
        } else {
          Earliest(&d.wake_ns, due);
        }
        break;
      }
      case FaultType::kSlowClose:
      case FaultType::kDrop:
      case FaultType::kDuplicate:
      case FaultType::kDelay:
        break;
    }
  }
  d.allowed = allowed;
  return d;
}

void SendStage::Wrote(uint64_t n, int64_t now_ns) {
  written_ += n;
  for (ActiveFault& f : faults_) {
    switch (f.spec.type) {
      case FaultType::kLimitData:
        f.written += n;
        break;
      case FaultType::kBandwidth:
        f.tokens = std::max(f.tokens - static_cast<double>(n), 0.0);
        break;
      case FaultType::kSlicer:
        f.slice_left -= std::min(n, f.slice_left);
        if (f.slice_left == 0) f.next_slice_ns = now_ns + Ns(f.spec.delay);
        break;
      default:
        break;
    }
  }
}

bool SendStage::FinAllowed(int64_t now_ns, int64_t* wake_ns) {
  if (fin_due_ns_ == 0) fin_due_ns_ = now_ns;
  bool allowed = true;
  for (const ActiveFault& f : faults_) {
    if (f.spec.type == FaultType::kTimeout && !f.acted) {
      allowed = false;  // Nothing leaves, the FIN neither, until it closes.
    } else if (f.spec.type == FaultType::kSlowClose) {
      const int64_t due = fin_due_ns_ + Ns(f.spec.delay);
      if (now_ns < due) {
        allowed = false;
        Earliest(wake_ns, due);
      }
    }
  }
  return allowed;
}

// ---- FaultTable

absl::StatusOr<const FaultInfo*> FaultTable::Add(FaultSpec spec, absl::Time now,
                                                 uint64_t* id) {
  for (const auto& [fid, info] : faults_) {
    if (info.spec.name == spec.name) {
      return absl::AlreadyExistsError(
          absl::StrCat("fault ", spec.name, " already exists"));
    }
  }
  if (faults_.size() >= kMaxFaults) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "add fault ", spec.name, ": the agent holds ", faults_.size(),
        " faults, the most it allows (", kMaxFaults, "); remove some first"));
  }
  if (spec.seed == 0) {
    FaultRandom r(next_seed_++ ^ absl::ToUnixNanos(now));
    spec.seed = r.Next() | 1;
  }
  *id = next_id_++;
  FaultInfo& info = faults_[*id];
  info.spec = std::move(spec);
  info.created_at = now;
  info.updated_at = now;
  return &info;
}

absl::StatusOr<const FaultInfo*> FaultTable::Update(const FaultSpec& spec,
                                                    absl::Time now,
                                                    uint64_t* id) {
  for (auto& [fid, info] : faults_) {
    if (info.spec.name != spec.name) continue;
    FaultTarget target = std::move(info.spec.target);
    const uint64_t seed = spec.seed == 0 ? info.spec.seed : spec.seed;
    info.spec = spec;
    info.spec.target = std::move(target);
    info.spec.seed = seed;
    info.updated_at = now;
    *id = fid;
    return &info;
  }
  return absl::NotFoundError(absl::StrCat("fault ", spec.name, " not found"));
}

absl::StatusOr<std::vector<uint64_t>> FaultTable::Remove(absl::string_view name,
                                                         const Labels& selector,
                                                         bool all) {
  std::vector<uint64_t> removed;
  for (auto it = faults_.begin(); it != faults_.end();) {
    const FaultSpec& s = it->second.spec;
    bool match = all;
    if (!name.empty()) match = s.name == name;
    if (!selector.empty()) {
      match =
          std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
            auto l = s.labels.find(kv.first);
            return l != s.labels.end() && l->second == kv.second;
          });
    }
    if (match) {
      removed.push_back(it->first);
      it = faults_.erase(it);
    } else {
      ++it;
    }
  }
  if (!name.empty() && removed.empty()) {
    return absl::NotFoundError(absl::StrCat("fault ", name, " not found"));
  }
  return removed;
}

FaultInfo* FaultTable::Find(uint64_t id) {
  auto it = faults_.find(id);
  return it == faults_.end() ? nullptr : &it->second;
}

}  // namespace sockagent
