// HTTP/2 frame accounting on a control connection's client-to-agent bytes,
// before gRPC sees them (gRPC 1.51 has no defence against "rapid reset",
// CVE-2023-44487: every HEADERS becomes a queued ~20 KB call at once, and
// RST_STREAM does not take it out of the queue). The relay in
// control_relay.h feeds each chunk it read to an H2ClientScanner and
// forwards only what the scanner allows.
//
// The scanner reads frame headers only (24-byte preface, then 9-byte
// headers: 24-bit length, type, flags, 31-bit stream id) and skips each
// payload unread. It limits:
// - RST_STREAM frames per connection: a token bucket (default 50/s, burst
//   100). A client resets a stream only when it cancels a call; past the
//   bucket the connection is cut (Verdict::kCut, reason "rapid_reset").
// - RST_STREAM frames agent-wide: a bucket shared by all connections
//   (default 1,000/s, burst 1,000: below the ~3,000 calls/s gRPC's callback
//   server matches here). When it is empty the connection pauses
//   (Verdict::kPause) before that frame: the relay stops reading it until a
//   token is due, so the kernel's socket buffers push back on the sender.
// - HEADERS frames before the client acknowledged the agent's SETTINGS
//   (default 100): gRPC applies its MAX_CONCURRENT_STREAMS only once the
//   client acknowledged it, so a client that never does could otherwise
//   open streams without limit (reason "streams_before_settings_ack"; the
//   daemon sets it to its MAX_CONCURRENT_STREAMS, 2,048).
// - Open streams of a connection that has not made an authenticated call
//   yet (TrackStreams): a stream opens with the client's HEADERS on a new
//   stream id and closes when the agent ends it (END_STREAM on its
//   trailers, ScanAgent) or either side resets it. Such a connection may
//   hold `per_connection` open streams (default 16): one more HEADERS
//   pauses the connection (Verdict::kPause, reason "awaiting_auth") until
//   a call was authenticated (SetAuthenticated) or a stream closed, and is
//   cut after `auth_wait` (reason "unauthenticated_streams"). All
//   unauthenticated connections together hold at most `total` (default
//   256): past it the scanner answers Verdict::kMakeRoom and the relay cuts
//   the connection holding the most. A HEADERS frame is never dropped
//   alone (HPACK state): a connection is held back or cut whole.
//
// Not thread-safe: one scanner per connection, the buckets on the relay's
// thread.
//
//   TokenBucket agent(1000, 1000);
//   H2ClientScanner scanner(limits);
//   ScanResult r = scanner.Scan(chunk, absl::Now(), agent);
//   forward chunk[0, r.forward); then act on r.verdict.
#ifndef SOCKAGENT_SERVICE_H2_GUARD_H_
#define SOCKAGENT_SERVICE_H2_GUARD_H_

#include <cstddef>
#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sockagent {

// Tokens refill at `rate` per second up to `burst`; starts full.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst);

  // True (and one token taken) when a token is available at `now`.
  bool TryTake(absl::Time now);
  // True when a token is available at `now` (none taken).
  bool Available(absl::Time now);
  // How long until one token is available (zero when one is).
  absl::Duration TimeToToken(absl::Time now);

 private:
  void Refill(absl::Time now);

  double rate_;
  double burst_;
  double tokens_;
  absl::Time last_ = absl::InfinitePast();
};

struct H2GuardLimits {
  double rst_per_second = 50;
  double rst_burst = 100;
  uint32_t max_headers_before_settings_ack = 100;
  // How long a connection at its unauthenticated stream limit may wait for
  // an authenticated call before it is cut.
  absl::Duration auth_wait = absl::Seconds(2);
};

// Open streams of connections without an authenticated call: the limits
// and the count of all of them together. Shared by the relay's scanners
// (its thread only).
struct H2StreamBudget {
  uint32_t per_connection = 16;
  uint32_t total = 256;
  uint32_t open = 0;
};

struct ScanResult {
  enum class Verdict {
    kForward,  // Forward all `forward` bytes (the whole chunk).
    kPause,    // Forward `forward` bytes, then wait `wait` and scan the rest.
    kCut,      // Close the connection; `reason` says why.
    // Forward `forward` bytes; the agent-wide unauthenticated stream budget
    // is spent: close another connection (or this one) and scan the rest.
    kMakeRoom,
  };
  Verdict verdict = Verdict::kForward;
  size_t forward = 0;
  absl::Duration wait;
  absl::string_view reason;  // Static text: "rapid_reset", ...
};

// ScanResult::reason of a pause for the agent-wide RST_STREAM bucket.
inline constexpr absl::string_view kReasonAgentRstRate = "agent_rst_rate";

class H2ClientScanner {
 public:
  static constexpr size_t kPrefaceBytes = 24;
  static constexpr size_t kFrameHeaderBytes = 9;
  static constexpr uint8_t kData = 0x0;
  static constexpr uint8_t kHeaders = 0x1;
  static constexpr uint8_t kRstStream = 0x3;
  static constexpr uint8_t kSettings = 0x4;
  static constexpr uint8_t kFlagAck = 0x1;
  static constexpr uint8_t kFlagEndStream = 0x1;

  explicit H2ClientScanner(const H2GuardLimits& limits);

  // Scans the next bytes of the client's stream (the bytes after those of
  // the previous call that were forwarded). After kPause, call again with
  // the bytes from `forward` on; after kCut, do not call again.
  ScanResult Scan(absl::string_view data, absl::Time now, TokenBucket& agent);

  uint64_t rst_frames() const { return rst_frames_; }
  uint64_t headers_frames() const { return headers_frames_; }

  // Counts this connection's open streams against `budget` (which must
  // outlive the scanner or Release()) until SetAuthenticated().
  void TrackStreams(H2StreamBudget* budget) { budget_ = budget; }
  // A call on this connection passed the token check: its streams no
  // longer count and are not limited.
  void SetAuthenticated();
  bool authenticated() const { return authenticated_; }
  // The connection is gone: its streams leave the budget. Idempotent.
  void Release();
  // Open streams counted now (0 once authenticated).
  size_t open_streams() const { return open_.size(); }
  // The agent's bytes towards the client (frame headers only; the agent's
  // stream begins with a frame, no preface): streams it ends or resets
  // close.
  void ScanAgent(absl::string_view data);

 private:
  // Decides on a complete frame header (in header_). False: do not consume
  // its last byte; `result` says why.
  bool Admit(absl::Time now, TokenBucket& agent, ScanResult& result);

  const H2GuardLimits limits_;
  TokenBucket connection_;
  size_t preface_left_ = kPrefaceBytes;
  uint8_t header_[kFrameHeaderBytes] = {};
  size_t header_have_ = 0;
  uint64_t payload_left_ = 0;
  bool settings_acked_ = false;
  // Streams (tracking only while unauthenticated with a budget).
  H2StreamBudget* budget_ = nullptr;
  bool authenticated_ = false;
  absl::flat_hash_set<uint32_t> open_;
  uint32_t last_client_stream_ = 0;
  absl::Time waiting_since_ = absl::InfinitePast();
  // The agent's side, parsed independently.
  uint8_t agent_header_[kFrameHeaderBytes] = {};
  size_t agent_header_have_ = 0;
  uint64_t agent_payload_left_ = 0;
  uint64_t rst_frames_ = 0;
  uint64_t headers_frames_ = 0;
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_H2_GUARD_H_
