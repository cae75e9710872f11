// BufferBudget: the agent-wide byte bound, its history share, and the
// watermarks that fire resume (low: three quarters) and trim (history above
// a quarter). The hooks are recorded, not run: the engine posts them.
#include "agent/buffer_budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace sockagent::engine_internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Fired {
  int post_resume = 0;
  int history_full = 0;
  std::vector<uint64_t> resumed;
};

BufferBudget MakeBudget(uint64_t cap, Fired& fired) {
  return BufferBudget(
      cap,
      BufferBudget::Hooks{
          .post_resume = [&fired] { ++fired.post_resume; },
          .resume = [&fired](uint64_t num) { fired.resumed.push_back(num); },
          .history_full = [&fired] { ++fired.history_full; },
      });
}

TEST(BufferBudget, RoomShrinksWithChargesAndNeverGoesNegative) {
  Fired fired;
  BufferBudget budget = MakeBudget(1000, fired);
  EXPECT_EQ(budget.Room(), 1000u);
  budget.Recharge(0, 300, /*in_history=*/false);
  budget.Recharge(0, 500, false);
  EXPECT_EQ(budget.total(), 800u);
  EXPECT_EQ(budget.Room(), 200u);
  // A StreamSend may take a buffer past the bound by one chunk.
  budget.Recharge(500, 900, false);
  EXPECT_EQ(budget.total(), 1200u);
  EXPECT_EQ(budget.Room(), 0u);
  budget.Recharge(900, 0, false);
  budget.Recharge(300, 0, false);
  EXPECT_EQ(budget.total(), 0u);
  EXPECT_EQ(fired.post_resume, 0);  // Nobody was paused.
}

TEST(BufferBudget, CheckRoomNamesTheBoundAndWhatDidNotFit) {
  Fired fired;
  BufferBudget budget = MakeBudget(1000, fired);
  budget.Recharge(0, 900, false);
  EXPECT_TRUE(budget.CheckRoom("send conn-4", 100).ok());
  absl::Status s = budget.CheckRoom("send conn-4", 101);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("send conn-4: the agent's buffers are "
                                     "full: 900 bytes buffered"));
  EXPECT_THAT(s.message(), HasSubstr("101 more"));
  EXPECT_THAT(s.message(), HasSubstr("max_total_buffered_bytes (1000)"));
}

TEST(BufferBudget, ResumeFiresOnceAtTheLowWatermark) {
  Fired fired;
  BufferBudget budget = MakeBudget(1000, fired);
  budget.Recharge(0, 1000, false);
  ASSERT_EQ(budget.Room(), 0u);
  budget.Pause(7);
  budget.Pause(3);
  EXPECT_EQ(budget.paused(), 2u);
  // Above three quarters: still paused.
  budget.Recharge(1000, 800, false);
  EXPECT_EQ(fired.post_resume, 0);
  // Growth never resumes.
  budget.Recharge(800, 790, false);
  budget.Recharge(0, 10, false);
  EXPECT_EQ(fired.post_resume, 0);
  // At exactly three quarters: posted once, however often it falls again
  // before the posted resume runs.
  budget.Recharge(800, 750, false);
  EXPECT_EQ(fired.post_resume, 1);
  budget.Recharge(750, 100, false);
  EXPECT_EQ(fired.post_resume, 1);
  EXPECT_TRUE(fired.resumed.empty());  // Only when the post runs.
  budget.ResumePaused();
  EXPECT_THAT(fired.resumed, ElementsAre(7, 3));
  EXPECT_EQ(budget.paused(), 0u);
  // A new pause after the resume ran can be resumed again.
  budget.Pause(9);
  budget.Recharge(100, 50, false);
  EXPECT_EQ(fired.post_resume, 2);
}

TEST(BufferBudget, HistoryShareIsAQuarterAndOverflowAsksForATrim) {
  Fired fired;
  BufferBudget budget = MakeBudget(1000, fired);
  EXPECT_EQ(budget.history_cap(), 250u);
  // A connection with 200 bytes is finalized: its bytes join the history.
  budget.Recharge(0, 200, false);
  budget.MoveToHistory(200);
  EXPECT_EQ(budget.history(), 200u);
  EXPECT_EQ(fired.history_full, 0);
  // Another record's bytes change while in history: over the share.
  budget.Recharge(0, 100, false);
  budget.MoveToHistory(100);
  budget.Recharge(100, 60, /*in_history=*/true);
  EXPECT_EQ(budget.history(), 260u);
  EXPECT_EQ(budget.total(), 260u);
  EXPECT_EQ(fired.history_full, 1);
  // Erasing a record takes its bytes out of both counts.
  budget.Forget(200);
  EXPECT_EQ(budget.history(), 60u);
  EXPECT_EQ(budget.total(), 60u);
  budget.Recharge(60, 0, true);
  EXPECT_EQ(budget.history(), 0u);
  EXPECT_EQ(fired.history_full, 1);
}

}  // namespace
}  // namespace sockagent::engine_internal
