// DatagramStage (agent/datagram_stage.h): per-datagram drop, duplicate and
// delay decisions from a seeded generator, and the held datagrams.
#include "agent/datagram_stage.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sockagent {
namespace {

using ::testing::ElementsAre;

ActiveFault Fault(uint64_t id, FaultType type, double probability,
                  uint64_t seed = 7) {
  ActiveFault f;
  f.fault_id = id;
  f.spec.name = "f" + std::to_string(id);
  f.spec.type = type;
  f.spec.probability = probability;
  f.random = FaultRandom(MixSeed(seed, f.spec.name, 1));
  return f;
}

ActiveFault Delay(uint64_t id, absl::Duration delay, absl::Duration jitter) {
  ActiveFault f = Fault(id, FaultType::kDelay, 0);
  f.spec.delay = delay;
  f.spec.jitter = jitter;
  return f;
}

TEST(DatagramStage, DropRateLandsInTheBinomialInterval) {
  for (uint64_t seed : {1, 2, 3, 42}) {
    DatagramStage stage;
    stage.Add(Fault(1, FaultType::kDrop, 0.3, seed));
    int dropped = 0;
    constexpr int kN = 10000;
    for (int i = 0; i < kN; ++i) {
      const DatagramStage::Verdict v = stage.Decide(0);
      if (v.copies == 0) {
        ++dropped;
        ASSERT_NE(v.dropped_by, nullptr);
        EXPECT_EQ(v.dropped_by->spec.name, "f1");
      } else {
        EXPECT_EQ(v.copies, 1);
      }
    }
    const double sd = std::sqrt(kN * 0.3 * 0.7);
    EXPECT_NEAR(dropped, kN * 0.3, 3.29 * sd) << "seed " << seed;
  }
}

TEST(DatagramStage, TheSameSeedGivesTheSameDrops) {
  auto run = [] {
    DatagramStage stage;
    stage.Add(Fault(1, FaultType::kDrop, 0.5, 99));
    std::vector<int> copies;
    for (int i = 0; i < 64; ++i) copies.push_back(stage.Decide(0).copies);
    return copies;
  };
  EXPECT_EQ(run(), run());
}

TEST(DatagramStage, DuplicateAndDropTogether) {
  DatagramStage stage;
  stage.Add(Fault(1, FaultType::kDuplicate, 1.0));
  EXPECT_EQ(stage.Decide(0).copies, 2);
  stage.Add(Fault(2, FaultType::kDrop, 1.0));
  EXPECT_EQ(stage.Decide(0).copies, 0);  // A dropped one is not sent twice.
  EXPECT_TRUE(stage.Remove(2));
  EXPECT_FALSE(stage.Remove(2));
  EXPECT_EQ(stage.Decide(0).copies, 2);
}

TEST(DatagramStage, DelayWithoutJitterKeepsTheOrder) {
  DatagramStage stage;
  stage.Add(Delay(1, absl::Milliseconds(10), absl::ZeroDuration()));
  EXPECT_TRUE(stage.has_delay());
  for (int i = 0; i < 3; ++i) {
    const int64_t now = i * 1000;
    const DatagramStage::Verdict v = stage.Decide(now);
    EXPECT_EQ(v.due_ns, now + 10'000'000);
    stage.Hold(v.due_ns, "d" + std::to_string(i));
  }
  EXPECT_EQ(stage.held(), 3u);
  EXPECT_EQ(stage.held_bytes(), 6u);
  EXPECT_EQ(stage.next_due_ns(), 10'000'000);
  EXPECT_TRUE(stage.TakeDue(9'999'999, false).empty());
  EXPECT_THAT(stage.TakeDue(10'001'000, false), ElementsAre("d0", "d1"));
  EXPECT_THAT(stage.TakeDue(0, /*all=*/true), ElementsAre("d2"));
  EXPECT_EQ(stage.held_bytes(), 0u);
  EXPECT_EQ(stage.next_due_ns(), 0);
}

TEST(DatagramStage, JitterStaysWithinItsSpreadAndNeverGoesNegative) {
  DatagramStage stage;
  stage.Add(Delay(1, absl::Milliseconds(1), absl::Milliseconds(5)));
  bool early = false;
  for (int i = 0; i < 1000; ++i) {
    const DatagramStage::Verdict v = stage.Decide(100);
    EXPECT_LE(v.due_ns, 100 + 6'000'000);
    if (v.due_ns == 0) early = true;  // Jitter below zero: no delay.
    EXPECT_TRUE(v.due_ns == 0 || v.due_ns > 100);
  }
  EXPECT_TRUE(early);
}

TEST(DatagramStage, AnUpdateKeepsTheGeneratorGoing) {
  DatagramStage a;
  DatagramStage b;
  a.Add(Fault(1, FaultType::kDrop, 0.5));
  b.Add(Fault(1, FaultType::kDrop, 0.5));
  for (int i = 0; i < 10; ++i) {
    a.Decide(0);
    b.Decide(0);
  }
  a.Add(Fault(1, FaultType::kDrop, 0.5));  // Same type: spec replaced only.
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(a.Decide(0).copies, b.Decide(0).copies);
}

}  // namespace
}  // namespace sockagent
