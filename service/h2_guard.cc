#include "service/h2_guard.h"

#include <algorithm>

namespace sockagent {

TokenBucket::TokenBucket(double rate, double burst)
    : rate_(rate), burst_(burst), tokens_(burst) {}

void TokenBucket::Refill(absl::Time now) {
  if (last_ == absl::InfinitePast()) {
    last_ = now;
    return;
  }
  if (now <= last_) return;
  tokens_ =
      std::min(burst_, tokens_ + rate_ * absl::ToDoubleSeconds(now - last_));
  last_ = now;
}

bool TokenBucket::Available(absl::Time now) {
  Refill(now);
  return tokens_ >= 1.0;
}

bool TokenBucket::TryTake(absl::Time now) {
  if (!Available(now)) return false;
  tokens_ -= 1.0;
  return true;
}

absl::Duration TokenBucket::TimeToToken(absl::Time now) {
  Refill(now);
  if (tokens_ >= 1.0) return absl::ZeroDuration();
  if (rate_ <= 0) return absl::InfiniteDuration();
  return absl::Seconds((1.0 - tokens_) / rate_);
}

H2ClientScanner::H2ClientScanner(const H2GuardLimits& limits)
    : limits_(limits), connection_(limits.rst_per_second, limits.rst_burst) {}

bool H2ClientScanner::Admit(absl::Time now, TokenBucket& agent,
                            ScanResult& result) {
  const uint8_t type = header_[3];
  const uint8_t flags = header_[4];
  if (type == kSettings && (flags & kFlagAck) != 0) settings_acked_ = true;
  if (type == kHeaders && !settings_acked_ &&
      headers_frames_ >= limits_.max_headers_before_settings_ack) {
    result.verdict = ScanResult::Verdict::kCut;
    result.reason = "streams_before_settings_ack";
    return false;
  }
  const uint32_t stream = ((uint32_t{header_[5]} & 0x7f) << 24) |
                          (uint32_t{header_[6]} << 16) |
                          (uint32_t{header_[7]} << 8) | uint32_t{header_[8]};
  const bool opens = type == kHeaders && stream > last_client_stream_;
  if (opens && budget_ != nullptr && !authenticated_) {
    if (open_.size() >= budget_->per_connection) {
      if (waiting_since_ == absl::InfinitePast()) waiting_since_ = now;
      if (now - waiting_since_ >= limits_.auth_wait) {
        result.verdict = ScanResult::Verdict::kCut;
        result.reason = "unauthenticated_streams";
        return false;
      }
      // Held until a call is authenticated or a stream closes.
      result.verdict = ScanResult::Verdict::kPause;
      result.wait = absl::Milliseconds(10);
      result.reason = "awaiting_auth";
      return false;
    }
    if (budget_->open >= budget_->total) {
      result.verdict = ScanResult::Verdict::kMakeRoom;
      result.reason = "unauthenticated_streams_total";
      return false;
    }
  }
  if (type == kRstStream) {
    if (!connection_.Available(now)) {
      result.verdict = ScanResult::Verdict::kCut;
      result.reason = "rapid_reset";
      return false;
    }
    if (!agent.TryTake(now)) {
      result.verdict = ScanResult::Verdict::kPause;
      result.wait = std::max(agent.TimeToToken(now), absl::Milliseconds(1));
      result.reason = kReasonAgentRstRate;
      return false;
    }
    connection_.TryTake(now);
    ++rst_frames_;
    if (open_.erase(stream) > 0) --budget_->open;
  }
  if (type == kHeaders) ++headers_frames_;
  if (opens) {
    last_client_stream_ = stream;
    waiting_since_ = absl::InfinitePast();
    if (budget_ != nullptr && !authenticated_) {
      open_.insert(stream);
      ++budget_->open;
    }
  }
  return true;
}

void H2ClientScanner::Release() {
  if (budget_ != nullptr) budget_->open -= static_cast<uint32_t>(open_.size());
  open_.clear();
  budget_ = nullptr;
}

void H2ClientScanner::SetAuthenticated() {
  authenticated_ = true;
  waiting_since_ = absl::InfinitePast();
  Release();
}

void H2ClientScanner::ScanAgent(absl::string_view data) {
  size_t i = 0;
  const size_t n = data.size();
  while (i < n) {
    if (agent_payload_left_ > 0) {
      const uint64_t take = std::min<uint64_t>(agent_payload_left_, n - i);
      agent_payload_left_ -= take;
      i += take;
      continue;
    }
    agent_header_[agent_header_have_++] = static_cast<uint8_t>(data[i++]);
    if (agent_header_have_ < kFrameHeaderBytes) continue;
    agent_header_have_ = 0;
    const uint8_t* h = agent_header_;
    agent_payload_left_ =
        (uint64_t{h[0]} << 16) | (uint64_t{h[1]} << 8) | uint64_t{h[2]};
    const uint8_t type = h[3];
    const uint8_t flags = h[4];
    if (open_.empty()) continue;
    const uint32_t stream = ((uint32_t{h[5]} & 0x7f) << 24) |
                            (uint32_t{h[6]} << 16) | (uint32_t{h[7]} << 8) |
                            uint32_t{h[8]};
    const bool ends = ((type == kHeaders || type == kData) &&
                       (flags & kFlagEndStream) != 0) ||
                      type == kRstStream;
    if (ends && open_.erase(stream) > 0) --budget_->open;
  }
}

ScanResult H2ClientScanner::Scan(absl::string_view data, absl::Time now,
                                 TokenBucket& agent) {
  ScanResult result;
  size_t i = 0;
  const size_t n = data.size();
  while (i < n) {
    if (preface_left_ > 0) {
      const size_t take = std::min(preface_left_, n - i);
      preface_left_ -= take;
      i += take;
      continue;
    }
    if (payload_left_ > 0) {
      const uint64_t take = std::min<uint64_t>(payload_left_, n - i);
      payload_left_ -= take;
      i += take;
      continue;
    }
    // A frame header, possibly split across reads: the decision falls on
    // its last byte, so a refused frame never reaches gRPC whole.
    if (header_have_ + 1 < kFrameHeaderBytes) {
      header_[header_have_++] = static_cast<uint8_t>(data[i++]);
      continue;
    }
    header_[header_have_] = static_cast<uint8_t>(data[i]);
    if (!Admit(now, agent, result)) {
      result.forward = i;
      return result;
    }
    ++i;
    header_have_ = 0;
    payload_left_ = (uint64_t{header_[0]} << 16) | (uint64_t{header_[1]} << 8) |
                    uint64_t{header_[2]};
  }
  result.forward = n;
  return result;
}

}  // namespace sockagent
