// Receive conditions: min_bytes ("recv --exactly N") and delimiter
// ("recv --until DELIM") complete only when met, take nothing when the wait
// ends first, never over-read past the delimiter, and give way at end of
// stream and when the receive buffer is full.
#include <sys/socket.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

class EngineReceiveCondition : public EngineTest {
 protected:
  // Waits until the agent buffered `n` bytes of `id`.
  bool Buffered(const std::string& id, uint64_t n) {
    return WaitFor([&] {
      auto c = sync_->Connection(id);
      return c.has_value() && c->counters.recv_buffered >= n;
    });
  }
};

TEST_F(EngineReceiveCondition, MinBytesWaitsForAllOfThem) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "abc"));
  ASSERT_TRUE(Buffered(id, 3));
  absl::Notification done;
  absl::StatusOr<ReceiveResult> result;
  ReceiveSpec spec;
  spec.min_bytes = 5;
  spec.max_bytes = 5;
  spec.wait = absl::Seconds(30);
  engine_->Receive(id, spec, [&](absl::StatusOr<ReceiveResult> r) {
    result = std::move(r);
    done.Notify();
  });
  // Three bytes are there, but five were asked for.
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  ASSERT_TRUE(WriteAll(client.get(), "defgh"));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->data, "abcde");
  EXPECT_EQ(result->recv_buffered, 3u);
}

TEST_F(EngineReceiveCondition, UnmetMinBytesTakesNothingWhenTheWaitEnds) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "abc"));
  ASSERT_TRUE(Buffered(id, 3));
  ReceiveSpec spec;
  spec.min_bytes = 10;
  spec.wait = absl::Milliseconds(50);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, "");
  EXPECT_EQ(r->recv_buffered, 3u);
  EXPECT_FALSE(r->end_of_stream);
  // The bytes are still there for the next Receive.
  r = sync_->Receive(id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, "abc");
}

TEST_F(EngineReceiveCondition, MinBytesGivesWayAtEndOfStream) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "ab"));
  ::shutdown(client.get(), SHUT_WR);
  ReceiveSpec spec;
  spec.min_bytes = 10;
  spec.wait = absl::Seconds(30);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, "ab");
  EXPECT_TRUE(r->end_of_stream);
}

TEST_F(EngineReceiveCondition, DelimiterTakesUpToItAndNoFurther) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "HTTP/1.1 200 OK\r"));
  ASSERT_TRUE(Buffered(id, 16));
  absl::Notification done;
  absl::StatusOr<ReceiveResult> result;
  ReceiveSpec spec;
  spec.delimiter = "\r\n";
  spec.wait = absl::Seconds(30);
  engine_->Receive(id, spec, [&](absl::StatusOr<ReceiveResult> r) {
    result = std::move(r);
    done.Notify();
  });
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  // The delimiter completes across two reads; the next line stays queued.
  ASSERT_TRUE(WriteAll(client.get(), "\nServer: x\r\n"));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->data, "HTTP/1.1 200 OK\r\n");
  spec.wait = absl::Seconds(5);
  absl::StatusOr<ReceiveResult> next = sync_->Receive(id, spec);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->data, "Server: x\r\n");
}

TEST_F(EngineReceiveCondition, DelimiterNotFoundWithinMaxBytesReturnsMax) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "0123456789"));
  ASSERT_TRUE(Buffered(id, 10));
  ReceiveSpec spec;
  spec.delimiter = "\n";
  spec.max_bytes = 4;
  spec.wait = absl::Seconds(5);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, "0123");
}

TEST_F(EngineReceiveCondition, UnmetDelimiterTakesNothingWhenTheWaitEnds) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "no newline"));
  ASSERT_TRUE(Buffered(id, 10));
  ReceiveSpec spec;
  spec.delimiter = "\n";
  spec.wait = absl::Milliseconds(50);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, "");
  EXPECT_EQ(r->recv_buffered, 10u);
}

TEST_F(EngineReceiveCondition, FullBufferCompletesAnUnmetCondition) {
  // With a 64 KiB receive buffer, asking for more can never be met:
  // reading pauses at the bound, so the Receive returns what it holds.
  EngineOptions options;
  options.recv_buffer_bytes = 64 * 1024;
  MakeEngine(options);
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  const std::string block(options.recv_buffer_bytes, 'z');
  std::thread writer([&] { WriteAll(client.get(), block); });
  ReceiveSpec spec;
  spec.delimiter = "\n";
  spec.max_bytes = options.recv_buffer_bytes * 2;
  spec.wait = absl::Seconds(30);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, spec);
  writer.join();
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->data.size(), 0u);
  EXPECT_LE(r->data.size(), options.recv_buffer_bytes);
}

}  // namespace
}  // namespace sockagent::testing
