// The fault model (agent/faults.h) on its own: validation naming the
// field, the table's bounds, the toxicity roll, and the SEND stage's
// decisions on a fake clock (plain nanosecond numbers).
#include "agent/faults.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace sockagent {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMs = 1'000'000;

FaultSpec Latency(absl::Duration l, absl::Duration jitter = {}) {
  FaultSpec s;
  s.name = "lat";
  s.type = FaultType::kLatency;
  s.latency = l;
  s.jitter = jitter;
  s.target.server_id = "srv-1";
  return s;
}

ActiveFault Active(FaultSpec spec, uint64_t id, int64_t now) {
  ActiveFault f;
  f.fault_id = id;
  f.spec = std::move(spec);
  f.applied_ns = now;
  f.random = FaultRandom(42);
  return f;
}

TEST(FaultValidation, AcceptsEveryStreamType) {
  FaultSpec s = Latency(absl::Milliseconds(20), absl::Milliseconds(5));
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
  s.type = FaultType::kBandwidth;
  s.rate_bytes_per_second = 1000;
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
  s.type = FaultType::kSlicer;
  s.average_size = 10;
  s.size_variation = 5;
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
  s.type = FaultType::kLimitData;
  s.bytes = 0;
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
  s.type = FaultType::kTimeout;
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
}

TEST(FaultValidation, NamesTheBadField) {
  FaultSpec s = Latency(absl::Milliseconds(20), absl::Hours(2));
  EXPECT_EQ(ValidateFaultSpec(s).message(),
            "fault.latency.jitter must be <= 1h");
  s = Latency(-absl::Milliseconds(1));
  EXPECT_EQ(ValidateFaultSpec(s).message(),
            "fault.latency.latency must be >= 0");
  s = Latency(absl::Milliseconds(1));
  s.toxicity = 1.5;
  EXPECT_EQ(ValidateFaultSpec(s).message(),
            "fault.toxicity must be between 0 and 1");
  s.toxicity = std::nan("");
  EXPECT_FALSE(ValidateFaultSpec(s).ok());
  s = Latency(absl::Milliseconds(1));
  s.name = "Bad_Name";
  EXPECT_THAT(ValidateFaultSpec(s).message(), HasSubstr("fault.name"));
  s.name = "";
  EXPECT_EQ(ValidateFaultSpec(s).message(), "fault.name is required");
  s.name = std::string(64, 'a');
  EXPECT_THAT(ValidateFaultSpec(s).message(), HasSubstr("at most 63"));
  s = Latency(absl::Milliseconds(1));
  s.target.connection_id = "conn-1";
  EXPECT_THAT(ValidateFaultSpec(s).message(), HasSubstr("exactly one"));
  s.target = {};
  EXPECT_THAT(ValidateFaultSpec(s).message(), HasSubstr("exactly one"));
  s = Latency(absl::Milliseconds(1));
  s.type = FaultType::kBandwidth;
  EXPECT_THAT(ValidateFaultSpec(s).message(),
              HasSubstr("fault.bandwidth.rate_bytes_per_second"));
  s.type = FaultType::kSlicer;
  s.average_size = 4;
  s.size_variation = 4;
  EXPECT_THAT(ValidateFaultSpec(s).message(),
              HasSubstr("fault.slicer.size_variation"));
  // RECEIVED takes stream and datagram faults alike.
  s.direction = FaultDirection::kReceived;
  s.size_variation = 1;
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
  s.type = FaultType::kDrop;
  s.probability = 0.5;
  EXPECT_TRUE(ValidateFaultSpec(s).ok());
}

TEST(FaultTable, RejectsDuplicatesAndStopsAtTheBound) {
  FaultTable table;
  uint64_t id = 0;
  EXPECT_EQ(table.Add(Latency(absl::Milliseconds(1)), absl::Now(), &id)
                .status()
                .code(),
            absl::StatusCode::kOk);
  EXPECT_EQ(table.Add(Latency(absl::Milliseconds(1)), absl::Now(), &id)
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
  for (size_t i = 1; i < kMaxFaults; ++i) {
    FaultSpec s = Latency(absl::Milliseconds(1));
    s.name = "f" + std::to_string(i);
    ASSERT_TRUE(table.Add(s, absl::Now(), &id).ok());
  }
  FaultSpec s = Latency(absl::Milliseconds(1));
  s.name = "one-more";
  EXPECT_EQ(table.Add(s, absl::Now(), &id).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(FaultTable, SeedIsPickedAndKeptByUpdate) {
  FaultTable table;
  uint64_t id = 0;
  auto info = table.Add(Latency(absl::Milliseconds(1)), absl::Now(), &id);
  ASSERT_TRUE(info.ok());
  const uint64_t seed = (*info)->spec.seed;
  EXPECT_NE(seed, 0u);
  FaultSpec update = Latency(absl::Milliseconds(5));
  update.target = {};  // The target stays the fault's own.
  auto updated = table.Update(update, absl::Now(), &id);
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ((*updated)->spec.seed, seed);
  EXPECT_EQ((*updated)->spec.latency, absl::Milliseconds(5));
  EXPECT_EQ((*updated)->spec.target.server_id, "srv-1");
  update.name = "nope";
  EXPECT_EQ(table.Update(update, absl::Now(), &id).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(FaultTable, RemovesBySelectorAllAtOnce) {
  FaultTable table;
  uint64_t id = 0;
  for (int i = 0; i < 3; ++i) {
    FaultSpec s = Latency(absl::Milliseconds(1));
    s.name = "f" + std::to_string(i);
    if (i < 2) s.labels["test"] = "a";
    ASSERT_TRUE(table.Add(s, absl::Now(), &id).ok());
  }
  auto removed = table.Remove("", Labels{{"test", "a"}}, false);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->size(), 2u);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.Remove("nope", {}, false).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(table.Remove("", {}, true)->size(), 1u);
  EXPECT_EQ(table.size(), 0u);
}

TEST(Toxicity, IsReproducibleAndNearItsProbability) {
  int hits = 0;
  for (uint64_t conn = 1; conn <= 10000; ++conn) {
    const bool a = RollToxicity(0.3, 7, "x", conn);
    EXPECT_EQ(a, RollToxicity(0.3, 7, "x", conn));
    hits += a ? 1 : 0;
  }
  // Binomial(10000, 0.3): sd 46; 5 sd either side.
  EXPECT_GT(hits, 3000 - 230);
  EXPECT_LT(hits, 3000 + 230);
  EXPECT_TRUE(RollToxicity(1.0, 7, "x", 1));
  EXPECT_FALSE(RollToxicity(0.0, 7, "x", 1));
}

TEST(SendStage, LatencyHoldsEachArrivalForItsDelay) {
  SendStage stage;
  stage.Add(Active(Latency(absl::Milliseconds(20)), 1, 0), 0, 0);
  // 100 bytes arrive at t=0, 50 more at t=5ms.
  SendStage::Decision d = stage.Decide(100, 0);
  EXPECT_EQ(d.allowed, 0u);
  EXPECT_EQ(d.wake_ns, 20 * kMs);
  d = stage.Decide(150, 5 * kMs);
  EXPECT_EQ(d.allowed, 0u);
  d = stage.Decide(150, 20 * kMs);
  EXPECT_EQ(d.allowed, 100u);
  EXPECT_EQ(d.wake_ns, 25 * kMs);
  stage.Wrote(100, 20 * kMs);
  d = stage.Decide(150, 25 * kMs);
  EXPECT_EQ(d.allowed, 50u);
}

TEST(SendStage, JitterNeverReorders) {
  SendStage stage;
  stage.Add(
      Active(Latency(absl::Milliseconds(20), absl::Milliseconds(19)), 1, 0), 0,
      0);
  for (int i = 1; i <= 200; ++i) stage.Decide(i, i * 100'000);
  // Each release time is at least the previous one's: walking time forward
  // always allows a prefix that only grows.
  uint64_t last = 0;
  for (int64_t t = 0; t < 60 * kMs; t += kMs / 10) {
    const uint64_t allowed = stage.Decide(200, t).allowed;
    EXPECT_GE(allowed, last);
    last = allowed;
  }
  EXPECT_EQ(last, 200u);
}

TEST(SendStage, RemovingLatencyReleasesEverything) {
  SendStage stage;
  stage.Add(Active(Latency(absl::Seconds(600)), 1, 0), 0, 0);
  EXPECT_EQ(stage.Decide(1000, 0).allowed, 0u);
  EXPECT_TRUE(stage.Remove(1));
  EXPECT_EQ(stage.Decide(1000, kMs).allowed, 1000u);
  EXPECT_TRUE(stage.empty());
}

TEST(SendStage, BandwidthFollowsTheRate) {
  SendStage stage;
  FaultSpec s = Latency(absl::ZeroDuration());
  s.type = FaultType::kBandwidth;
  s.rate_bytes_per_second = 1'000'000;
  stage.Add(Active(s, 1, 0), 0, 0);
  const uint64_t total = 10'000'000;
  int64_t t = 0;
  uint64_t sent = 0;
  while (sent < 1'000'000) {
    SendStage::Decision d = stage.Decide(total, t);
    stage.Wrote(d.allowed, t);
    sent += d.allowed;
    ASSERT_GT(d.wake_ns, t);
    t = d.wake_ns;
  }
  // 1 MB at 1 MB/s: about a second (plus at most one burst).
  EXPECT_GT(t, 950 * kMs);
  EXPECT_LT(t, 1010 * kMs);
}

TEST(SendStage, SlicerCutsSlicesAndWaitsBetween) {
  SendStage stage;
  FaultSpec s = Latency(absl::ZeroDuration());
  s.type = FaultType::kSlicer;
  s.average_size = 10;
  s.size_variation = 3;
  s.delay = absl::Milliseconds(1);
  stage.Add(Active(s, 1, 0), 0, 0);
  int64_t t = 0;
  uint64_t sent = 0;
  while (sent < 1000) {
    SendStage::Decision d = stage.Decide(1000, t);
    if (d.allowed > 0) {
      if (sent + d.allowed < 1000) {  // The last slice may be shorter.
        EXPECT_GE(d.allowed, 7u);
      }
      EXPECT_LE(d.allowed, 13u);
      stage.Wrote(d.allowed, t);
      sent += d.allowed;
      continue;
    }
    EXPECT_EQ(d.wake_ns, t + kMs);
    t = d.wake_ns;
  }
}

TEST(SendStage, LimitDataAllowsExactlyNThenClosesOnce) {
  SendStage stage;
  FaultSpec s = Latency(absl::ZeroDuration());
  s.type = FaultType::kLimitData;
  s.bytes = 100;
  stage.Add(Active(s, 1, 0), 0, 0);
  SendStage::Decision d = stage.Decide(60, 0);
  EXPECT_EQ(d.allowed, 60u);
  stage.Wrote(60, 0);
  d = stage.Decide(160, 0);
  EXPECT_EQ(d.allowed, 40u);
  EXPECT_EQ(d.action, SendStage::Action::kNone);
  stage.Wrote(40, 0);
  d = stage.Decide(160, 0);
  EXPECT_EQ(d.allowed, 0u);
  EXPECT_TRUE(d.discard);
  EXPECT_EQ(d.action, SendStage::Action::kClose);
  d = stage.Decide(160, 0);
  EXPECT_EQ(d.action, SendStage::Action::kNone);  // Once only.
}

TEST(SendStage, ResetPeerAndTimeoutActAtTheirTime) {
  SendStage stage;
  FaultSpec s = Latency(absl::ZeroDuration());
  s.type = FaultType::kResetPeer;
  s.timeout = absl::Milliseconds(50);
  stage.Add(Active(s, 1, 10 * kMs), 0, 10 * kMs);
  SendStage::Decision d = stage.Decide(0, 10 * kMs);
  EXPECT_EQ(d.wake_ns, 60 * kMs);
  EXPECT_EQ(stage.Decide(0, 60 * kMs).action, SendStage::Action::kReset);

  SendStage blackhole;
  s.type = FaultType::kTimeout;
  s.timeout = absl::ZeroDuration();
  blackhole.Add(Active(s, 2, 0), 0, 0);
  d = blackhole.Decide(500, 0);
  EXPECT_EQ(d.allowed, 0u);
  EXPECT_TRUE(d.discard);
  EXPECT_EQ(d.wake_ns, 0);
  int64_t wake = 0;
  EXPECT_FALSE(blackhole.FinAllowed(0, &wake));

  // With a timeout it closes once, and then lets the FIN out.
  SendStage timed;
  s.timeout = absl::Milliseconds(200);
  timed.Add(Active(s, 3, 0), 0, 0);
  EXPECT_FALSE(timed.FinAllowed(0, &wake));
  EXPECT_EQ(timed.Decide(0, 100 * kMs).wake_ns, 200 * kMs);
  EXPECT_EQ(timed.Decide(0, 200 * kMs).action, SendStage::Action::kClose);
  EXPECT_TRUE(timed.FinAllowed(200 * kMs, &wake));
}

TEST(SendStage, SlowCloseDelaysTheFin) {
  SendStage stage;
  FaultSpec s = Latency(absl::ZeroDuration());
  s.type = FaultType::kSlowClose;
  s.delay = absl::Milliseconds(30);
  stage.Add(Active(s, 1, 0), 0, 0);
  int64_t wake = 0;
  EXPECT_FALSE(stage.FinAllowed(5 * kMs, &wake));
  EXPECT_EQ(wake, 35 * kMs);
  EXPECT_TRUE(stage.FinAllowed(35 * kMs, &wake));
}

}  // namespace
}  // namespace sockagent
