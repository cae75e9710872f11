#include "agent/perf_wire.h"

#include <cstdlib>
#include <cstring>

namespace sockagent {
namespace {

constexpr char kMagic[4] = {'S', 'A', 'P', 'F'};

void PutU64(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

}  // namespace

void WritePerfHeader(const PerfHeader& h, char* out) {
  std::memcpy(out, kMagic, sizeof kMagic);
  out[4] = static_cast<char>(kPerfWireVersion);
  out[5] = out[6] = out[7] = 0;
  PutU64(h.run_id, out + 8);
  PutU64(h.sequence, out + 16);
  PutU64(static_cast<uint64_t>(h.sent_ns), out + 24);
}

std::optional<PerfHeader> ParsePerfHeader(const char* data, size_t n) {
  if (n < kPerfHeaderBytes || std::memcmp(data, kMagic, sizeof kMagic) != 0 ||
      static_cast<uint8_t>(data[4]) != kPerfWireVersion) {
    return std::nullopt;
  }
  PerfHeader h;
  h.run_id = GetU64(data + 8);
  h.sequence = GetU64(data + 16);
  h.sent_ns = static_cast<int64_t>(GetU64(data + 24));
  return h;
}

void PerfReceiveCounter::Account(const PerfHeader& h, absl::Time arrival,
                                 size_t bytes) {
  if (any_ && h.run_id != stats_.run_id) *this = PerfReceiveCounter();
  PerfReceiveStats& s = stats_;
  const int64_t arrival_ns = absl::ToUnixNanos(arrival);
  // RFC 3550 6.4.1, as iperf3 computes it: the transit time's change from
  // the previous datagram, smoothed with gain 1/16.
  const int64_t transit = arrival_ns - h.sent_ns;
  if (!any_) {
    any_ = true;
    s.run_id = h.run_id;
    s.first_at = arrival;
    s.highest_sequence = h.sequence;
  } else {
    const double d = std::llabs(transit - last_transit_ns_);
    jitter_ns_ += (d - jitter_ns_) / 16.0;
    if (h.sequence > s.highest_sequence) {
      s.highest_sequence = h.sequence;
    } else {
      ++s.out_of_order;  // Late (or a duplicate): not a new highest.
    }
  }
  last_transit_ns_ = transit;
  s.last_at = arrival;
  ++s.datagrams;
  s.bytes += bytes;
  const uint64_t expected = s.highest_sequence + 1;
  s.lost = expected > s.datagrams ? expected - s.datagrams : 0;
  s.jitter = absl::Nanoseconds(static_cast<int64_t>(jitter_ns_));
}

}  // namespace sockagent
