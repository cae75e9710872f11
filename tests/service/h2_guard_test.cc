// H2ClientScanner and TokenBucket on hand-built HTTP/2 byte streams.
#include "service/h2_guard.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/time/clock.h"

namespace sockagent {
namespace {

using Verdict = ScanResult::Verdict;

const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream,
                  const std::string& payload) {
  std::string f;
  const size_t n = payload.size();
  f.push_back(static_cast<char>((n >> 16) & 0xff));
  f.push_back(static_cast<char>((n >> 8) & 0xff));
  f.push_back(static_cast<char>(n & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>((stream >> 24) & 0x7f));
  f.push_back(static_cast<char>((stream >> 16) & 0xff));
  f.push_back(static_cast<char>((stream >> 8) & 0xff));
  f.push_back(static_cast<char>(stream & 0xff));
  return f + payload;
}

H2GuardLimits Limits(double rate, double burst, uint32_t before_ack) {
  H2GuardLimits l;
  l.rst_per_second = rate;
  l.rst_burst = burst;
  l.max_headers_before_settings_ack = before_ack;
  return l;
}

std::string Headers(uint32_t id) {
  return Frame(0x1, 0x4, id, std::string(37, 'h'));
}
std::string Rst(uint32_t id) { return Frame(0x3, 0, id, std::string(4, '\0')); }
std::string SettingsAck() { return Frame(0x4, 0x1, 0, ""); }

// Payload bytes that look like RST_STREAM headers must not count: they are
// skipped, not parsed.
TEST(H2ClientScanner, CountsFrameHeadersOnlyAndSkipsPayloads) {
  TokenBucket agent(1000, 1000);
  H2ClientScanner scanner({});
  const std::string fake = Rst(1) + Rst(3) + Rst(5);
  const std::string data = kPreface + Frame(0x4, 0, 0, "") + SettingsAck() +
                           Frame(0x0, 0, 1, fake) + Headers(1) + Rst(1);
  const absl::Time now = absl::Now();
  ScanResult r = scanner.Scan(data, now, agent);
  EXPECT_EQ(r.verdict, Verdict::kForward);
  EXPECT_EQ(r.forward, data.size());
  EXPECT_EQ(scanner.rst_frames(), 1u);
  EXPECT_EQ(scanner.headers_frames(), 1u);
}

// The same stream fed one byte at a time (every frame header split across
// reads) gives the same counts and forwards every byte.
TEST(H2ClientScanner, FrameHeadersSplitAcrossReads) {
  TokenBucket agent(1000, 1000);
  H2ClientScanner scanner({});
  std::string data = kPreface + SettingsAck();
  for (uint32_t id = 1; id < 40; id += 2) data += Headers(id) + Rst(id);
  data += Frame(0x9, 0x4, 41, std::string(70000, 'c'));  // CONTINUATION.
  data += Headers(43);
  const absl::Time now = absl::Now();
  size_t forwarded = 0;
  for (size_t step : {1, 2, 5, 7, 9, 13}) {
    H2ClientScanner s({});
    TokenBucket a(1000, 1000);
    size_t total = 0;
    for (size_t i = 0; i < data.size(); i += step) {
      ScanResult r = s.Scan(absl::string_view(data).substr(i, step), now, a);
      ASSERT_EQ(r.verdict, Verdict::kForward);
      total += r.forward;
    }
    EXPECT_EQ(total, data.size()) << "step " << step;
    EXPECT_EQ(s.rst_frames(), 20u) << "step " << step;
    EXPECT_EQ(s.headers_frames(), 21u) << "step " << step;
  }
  ScanResult r = scanner.Scan(data, now, agent);
  forwarded = r.forward;
  EXPECT_EQ(forwarded, data.size());
}

// Past its own bucket (burst 100) a connection is cut; the refused RST
// frame is not forwarded whole (its header's last byte is held back).
TEST(H2ClientScanner, RapidResetOverTheConnectionBucketIsCut) {
  TokenBucket agent(1e6, 1e6);
  H2ClientScanner scanner(Limits(50, 100, 100));
  std::string data = kPreface + SettingsAck();
  size_t before_101st = 0;
  for (uint32_t i = 0; i < 200; ++i) {
    data += Headers(2 * i + 1);
    if (i == 100) before_101st = data.size();
    data += Rst(2 * i + 1);
  }
  ScanResult r = scanner.Scan(data, absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kCut);
  EXPECT_EQ(r.reason, "rapid_reset");
  EXPECT_EQ(r.forward, before_101st + 8);
  EXPECT_EQ(scanner.rst_frames(), 100u);
}

// The bucket refills: 50 resets a second for ever is allowed.
TEST(H2ClientScanner, SteadyResetsWithinTheRateAreForwarded) {
  TokenBucket agent(1e6, 1e6);
  H2ClientScanner scanner(Limits(50, 100, 100));
  absl::Time now = absl::Now();
  ASSERT_EQ(scanner.Scan(kPreface + SettingsAck(), now, agent).verdict,
            Verdict::kForward);
  for (uint32_t i = 0; i < 1000; ++i) {
    now += absl::Milliseconds(25);  // 40 per second.
    ScanResult r =
        scanner.Scan(Headers(2 * i + 1) + Rst(2 * i + 1), now, agent);
    ASSERT_EQ(r.verdict, Verdict::kForward) << i;
  }
}

// An empty agent-wide bucket pauses before the RST (nothing is lost); once
// a token is due, scanning the rest goes on.
TEST(H2ClientScanner, EmptyAgentBucketPausesThenResumes) {
  TokenBucket agent(10, 2);
  H2ClientScanner scanner({});
  const std::string head = kPreface + SettingsAck();
  std::string data = head;
  for (uint32_t id = 1; id <= 5; id += 2) data += Headers(id) + Rst(id);
  absl::Time now = absl::Now();
  ScanResult r = scanner.Scan(data, now, agent);
  ASSERT_EQ(r.verdict, Verdict::kPause);
  const size_t third_rst =
      head.size() + 2 * (Headers(1) + Rst(1)).size() + Headers(5).size();
  EXPECT_EQ(r.forward, third_rst + 8);
  EXPECT_GT(r.wait, absl::ZeroDuration());
  EXPECT_LE(r.wait, absl::Milliseconds(101));
  // Too early: still paused, nothing more forwarded.
  ScanResult again = scanner.Scan(absl::string_view(data).substr(r.forward),
                                  now + absl::Milliseconds(10), agent);
  EXPECT_EQ(again.verdict, Verdict::kPause);
  EXPECT_EQ(again.forward, 0u);
  ScanResult rest = scanner.Scan(absl::string_view(data).substr(r.forward),
                                 now + absl::Milliseconds(150), agent);
  EXPECT_EQ(rest.verdict, Verdict::kForward);
  EXPECT_EQ(r.forward + rest.forward, data.size());
  EXPECT_EQ(scanner.rst_frames(), 3u);
}

// Before the SETTINGS ack gRPC does not apply MAX_CONCURRENT_STREAMS: more
// than the limit of HEADERS then is cut; after the ack, any number passes.
TEST(H2ClientScanner, StreamsBeforeSettingsAckAreBounded) {
  TokenBucket agent(1000, 1000);
  H2ClientScanner scanner(Limits(50, 100, 10));
  std::string data = kPreface;
  for (uint32_t i = 0; i < 11; ++i) data += Headers(2 * i + 1);
  ScanResult r = scanner.Scan(data, absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kCut);
  EXPECT_EQ(r.reason, "streams_before_settings_ack");

  H2ClientScanner acked(Limits(50, 100, 10));
  data = kPreface + Headers(1) + SettingsAck();
  for (uint32_t i = 1; i < 500; ++i) data += Headers(2 * i + 1);
  r = acked.Scan(data, absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kForward);
  EXPECT_EQ(acked.headers_frames(), 500u);
}

TEST(TokenBucket, RefillsAtItsRateUpToTheBurst) {
  TokenBucket b(100, 5);
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.TryTake(t0));
  EXPECT_FALSE(b.TryTake(t0));
  EXPECT_GT(b.TimeToToken(t0), absl::ZeroDuration());
  EXPECT_TRUE(b.TryTake(t0 + absl::Milliseconds(11)));
  // A long pause refills only up to the burst.
  const absl::Time t1 = t0 + absl::Seconds(100);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.TryTake(t1));
  EXPECT_FALSE(b.TryTake(t1));
}

}  // namespace
}  // namespace sockagent
