// A second Receive on a connection that has one parked: it takes the parked
// one's place when that one's caller is gone (ReceiveSpec::caller_gone) or
// the parked one ends within kReceiveGiveWay (its RPC was cancelled a moment
// earlier); otherwise it fails FailedPrecondition and the first keeps
// waiting. A Receive whose caller is gone never takes bytes.
#include <atomic>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

// One asynchronous Receive: its token and, once done, its result.
struct AsyncReceive {
  uint64_t token = 0;
  absl::Notification done;
  absl::StatusOr<ReceiveResult> result;
  absl::Time finished;
};

class EngineReceiveGiveWay : public EngineTest {
 protected:
  std::unique_ptr<AsyncReceive> Start(const std::string& id, ReceiveSpec spec) {
    auto r = std::make_unique<AsyncReceive>();
    AsyncReceive* raw = r.get();
    r->token = engine_->Receive(id, spec, [raw](auto result) {
      raw->result = std::move(result);
      raw->finished = absl::Now();
      raw->done.Notify();
    });
    return r;
  }
  static ReceiveSpec Waiting() {
    ReceiveSpec spec;
    spec.wait = absl::Seconds(30);
    return spec;
  }
};

TEST_F(EngineReceiveGiveWay, SecondFailsAfterTheGiveWayAndFirstKeepsWaiting) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  auto first = Start(id, Waiting());
  const absl::Time start = absl::Now();
  auto second = Start(id, Waiting());
  ASSERT_TRUE(second->done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(second->result.status().code(),
            absl::StatusCode::kFailedPrecondition)
      << second->result.status();
  EXPECT_NE(second->result.status().message().find("already waiting"),
            std::string::npos);
  // Timers never fire early.
  EXPECT_GE(second->finished - start, kReceiveGiveWay);
  EXPECT_FALSE(first->done.HasBeenNotified());
  ASSERT_TRUE(WriteAll(client.get(), "hi"));
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(first->result.ok()) << first->result.status();
  EXPECT_EQ(first->result->data, "hi");
}

TEST_F(EngineReceiveGiveWay, ThirdFailsAtOnce) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  auto first = Start(id, Waiting());
  auto second = Start(id, Waiting());
  auto third = Start(id, Waiting());
  ASSERT_TRUE(third->done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(third->result.status().code(),
            absl::StatusCode::kFailedPrecondition);
  engine_->CancelReceive(second->token);
  ASSERT_TRUE(second->done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(second->result.status().code(), absl::StatusCode::kCancelled);
  engine_->CancelReceive(first->token);
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(kTimeout));
}

TEST_F(EngineReceiveGiveWay, SecondTakesOverWhenTheFirstIsCancelled) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  auto first = Start(id, Waiting());
  auto second = Start(id, Waiting());
  engine_->CancelReceive(first->token);
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(first->result.ok()) << first->result.status();
  EXPECT_EQ(first->result->data, "");
  ASSERT_TRUE(WriteAll(client.get(), "for the second"));
  ASSERT_TRUE(second->done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(second->result.ok()) << second->result.status();
  EXPECT_EQ(second->result->data, "for the second");
}

TEST_F(EngineReceiveGiveWay, GoneCallerGivesWayAtOnceAndTakesNoBytes) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  auto gone = std::make_shared<std::atomic<bool>>(false);
  ReceiveSpec spec = Waiting();
  spec.caller_gone = [gone] { return gone->load(); };
  auto first = Start(id, spec);
  gone->store(true);  // Its RPC was cancelled; OnCancel has not run yet.
  // Bytes arriving now stay buffered: nobody would read that answer.
  ASSERT_TRUE(WriteAll(client.get(), "kept"));
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(first->result.status().code(), absl::StatusCode::kCancelled);
  absl::StatusOr<ReceiveResult> next = sync_->Receive(id, Waiting());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->data, "kept");
}

TEST_F(EngineReceiveGiveWay, NextReceiveDisplacesAGoneCallerAtOnce) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  auto gone = std::make_shared<std::atomic<bool>>(false);
  ReceiveSpec spec = Waiting();
  spec.min_bytes = 100;  // Never met here: it stays parked.
  spec.caller_gone = [gone] { return gone->load(); };
  auto first = Start(id, spec);
  ASSERT_TRUE(WriteAll(client.get(), "abc"));
  gone->store(true);
  ReceiveSpec zero;  // Zero wait: answers at once, no give-way needed.
  const absl::Time start = absl::Now();
  absl::StatusOr<ReceiveResult> next;
  do {
    next = sync_->Receive(id, zero);
    ASSERT_TRUE(next.ok()) << next.status();
  } while (next->data.empty() && absl::Now() - start < kTimeout);
  EXPECT_EQ(next->data, "abc");
  EXPECT_LT(absl::Now() - start, kReceiveGiveWay);
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(first->result.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace sockagent::testing
