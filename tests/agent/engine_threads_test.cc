// The engine's threading contract (engine.h): a call does its work on the
// caller's thread under the engine lock, so a Send on a writable connection
// has answered before it returns; a call made from inside a `done` is
// queued to the loop instead of re-entering the engine; many callers and
// the loop together lose no byte. Real sockets on 127.0.0.1, plain peers.
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

class EngineThreads : public EngineTest {};

TEST_F(EngineThreads, SendOnAWritableConnectionAnswersBeforeItReturns) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_FALSE(id.empty());

  std::atomic<bool> answered{false};
  std::thread::id answered_on;
  absl::StatusOr<SendResult> result;
  engine_->Send(id, "inline", [&](absl::StatusOr<SendResult> r) {
    result = std::move(r);
    answered_on = std::this_thread::get_id();
    answered.store(true);
  });
  ASSERT_TRUE(answered.load()) << "Send returned before answering";
  EXPECT_EQ(answered_on, std::this_thread::get_id());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->bytes_accepted, 6u);
  EXPECT_EQ(result->send_buffered, 0u);  // Written by the call itself.
  EXPECT_EQ(ReadExactly(client.get(), 6), "inline");
}

TEST_F(EngineThreads, ACallFromInsideDoneIsQueuedNotReentered) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_FALSE(id.empty());

  std::atomic<bool> outer_returned{false};
  std::atomic<bool> inner_ran_before_outer_returned{false};
  std::thread::id inner_thread;
  absl::Notification inner_done;
  engine_->Send(id, "first,", [&](absl::StatusOr<SendResult> r) {
    EXPECT_TRUE(r.ok()) << r.status();
    // Re-entering here would deadlock on the engine lock (or run inside
    // the first call's bookkeeping); the engine queues it instead.
    engine_->Send(id, "second", [&](absl::StatusOr<SendResult> r2) {
      EXPECT_TRUE(r2.ok()) << r2.status();
      inner_ran_before_outer_returned.store(!outer_returned.load());
      inner_thread = std::this_thread::get_id();
      inner_done.Notify();
    });
    outer_returned.store(true);
  });
  ASSERT_TRUE(inner_done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_FALSE(inner_ran_before_outer_returned.load());
  EXPECT_NE(inner_thread, std::this_thread::get_id());  // The loop thread.
  EXPECT_EQ(ReadExactly(client.get(), 12), "first,second");
}

// Eight threads Send on one connection while the loop thread reads a
// plain peer's bytes into a discard server and a peer drains the first: every
// byte is accounted for and nothing deadlocks (the ASan build checks the rest).
TEST_F(EngineThreads, ConcurrentCallersAndTheLoopLoseNothing) {
  Fd sink;
  absl::StatusOr<ServerInfo> server = StartWithClient(&sink);
  ASSERT_TRUE(server.ok()) << server.status();
  std::optional<ConnectionInfo> to_sink = AcceptedBy(*sync_, server->id);
  ASSERT_TRUE(to_sink.has_value());
  absl::StatusOr<ServerInfo> discard =
      sync_->StartServer(LoopbackServer(BehaviorKind::kDiscard));
  ASSERT_TRUE(discard.ok()) << discard.status();
  Fd source = TcpConnect(discard->local_addresses[0]);
  ASSERT_TRUE(source.valid());
  std::optional<ConnectionInfo> from_source = AcceptedBy(*sync_, discard->id);
  ASSERT_TRUE(from_source.has_value());

  constexpr int kThreads = 8;
  constexpr int kSendsPerThread = 300;
  constexpr size_t kChunk = 64;
  constexpr size_t kTotal = kThreads * kSendsPerThread * kChunk;
  std::thread drainer([&] { ReadExactly(sink.get(), kTotal); });
  std::thread feeder([&] { WriteAll(source.get(), Pattern(0, 1 << 20)); });
  std::atomic<uint64_t> accepted{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < kSendsPerThread; ++i) {
        absl::StatusOr<SendResult> r =
            sync_->Send(to_sink->id, std::string(kChunk, 'x'));
        if (r.ok()) {
          accepted += r->bytes_accepted;
        } else {
          ADD_FAILURE() << r.status();
          return;
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  drainer.join();
  feeder.join();
  EXPECT_EQ(accepted.load(), kTotal);
  std::optional<ConnectionInfo> sent;
  ASSERT_TRUE(WaitFor([&] {
    sent = sync_->Connection(to_sink->id);
    return sent.has_value() && sent->counters.bytes_sent == kTotal;
  }));
  std::optional<ConnectionInfo> read;
  ASSERT_TRUE(WaitFor([&] {
    read = sync_->Connection(from_source->id);
    return read.has_value() && read->counters.bytes_received == (1u << 20);
  })) << (read ? read->counters.bytes_received : 0);
}

}  // namespace
}  // namespace sockagent::testing
