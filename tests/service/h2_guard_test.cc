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

// Open streams of a connection without an authenticated call: at the
// per-connection limit the next HEADERS waits (nothing of it forwarded),
// a stream the agent ends makes room, and past the wait the connection is
// cut.
TEST(H2ClientScanner, UnauthenticatedStreamsWaitAtTheLimitThenAreCut) {
  TokenBucket agent(1000, 1000);
  H2StreamBudget budget{.per_connection = 2, .total = 100};
  H2ClientScanner scanner({});
  scanner.TrackStreams(&budget);
  const std::string head = kPreface + SettingsAck() + Headers(1) + Headers(3);
  const std::string data = head + Headers(5) + Headers(7);
  const absl::Time t0 = absl::Now();
  ScanResult r = scanner.Scan(data, t0, agent);
  EXPECT_EQ(r.verdict, Verdict::kPause);
  EXPECT_EQ(r.reason, "awaiting_auth");
  // All but the last byte of the third HEADERS frame's header.
  EXPECT_EQ(r.forward, head.size() + 8);
  EXPECT_EQ(scanner.open_streams(), 2u);
  EXPECT_EQ(budget.open, 2u);

  // The agent ends stream 1 (trailers with END_STREAM): room for stream 5;
  // stream 7 waits again.
  scanner.ScanAgent(Frame(0x4, 0, 0, "") + Frame(0x1, 0x4, 1, "hh") +
                    Frame(0x0, 0, 1, "ddd") + Frame(0x1, 0x5, 1, "tt"));
  EXPECT_EQ(budget.open, 1u);
  const std::string rest = data.substr(r.forward);
  ScanResult r2 = scanner.Scan(rest, t0 + absl::Milliseconds(10), agent);
  EXPECT_EQ(r2.verdict, Verdict::kPause);
  // The rest of stream 5's HEADERS, then all but the last header byte of
  // stream 7's.
  EXPECT_EQ(r2.forward, Headers(5).size());
  EXPECT_EQ(budget.open, 2u);

  // Nobody authenticates: cut after the wait.
  ScanResult r3 =
      scanner.Scan(rest.substr(r2.forward), t0 + absl::Seconds(3), agent);
  EXPECT_EQ(r3.verdict, Verdict::kCut);
  EXPECT_EQ(r3.reason, "unauthenticated_streams");
  scanner.Release();
  EXPECT_EQ(budget.open, 0u);
}

// An authenticated call lifts the limit and the connection's streams leave
// the budget; a client's RST_STREAM closes a stream too.
TEST(H2ClientScanner, AuthenticationLiftsTheStreamLimit) {
  TokenBucket agent(1000, 1000);
  H2StreamBudget budget{.per_connection = 2, .total = 100};
  H2ClientScanner scanner({});
  scanner.TrackStreams(&budget);
  std::string data =
      kPreface + SettingsAck() + Headers(1) + Rst(1) + Headers(3) + Headers(5);
  ScanResult r = scanner.Scan(data, absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kForward);
  EXPECT_EQ(budget.open, 2u);
  scanner.SetAuthenticated();
  EXPECT_EQ(budget.open, 0u);
  data.clear();
  for (uint32_t i = 3; i < 200; ++i) data += Headers(2 * i + 1);
  r = scanner.Scan(data, absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kForward);
  EXPECT_EQ(budget.open, 0u);
}

// All unauthenticated connections together: past the total the scanner
// asks the relay to make room (it cuts the connection holding the most).
TEST(H2ClientScanner, AgentWideStreamBudgetAsksForRoom) {
  TokenBucket agent(1000, 1000);
  H2StreamBudget budget{.per_connection = 16, .total = 3};
  H2ClientScanner a({});
  H2ClientScanner b({});
  a.TrackStreams(&budget);
  b.TrackStreams(&budget);
  const std::string start = kPreface + SettingsAck();
  ScanResult r = a.Scan(start + Headers(1) + Headers(3), absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kForward);
  const std::string more = start + Headers(1) + Headers(3);
  r = b.Scan(more, absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kMakeRoom);
  EXPECT_EQ(r.reason, "unauthenticated_streams_total");
  EXPECT_EQ(budget.open, 3u);
  a.Release();  // The relay cut `a`.
  r = b.Scan(more.substr(r.forward), absl::Now(), agent);
  EXPECT_EQ(r.verdict, Verdict::kForward);
  EXPECT_EQ(budget.open, 2u);
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
