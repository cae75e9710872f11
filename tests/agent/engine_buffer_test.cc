// Unit tests of the engine's small parts: Fifo, ByteQueue, address parsing
// and conversion, and the errno -> status mapping.
#include <cerrno>
#include <string>
#include <system_error>

#include "agent/address.h"
#include "agent/byte_queue.h"
#include "agent/fifo.h"
#include "agent/net_error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sockagent {
namespace {

TEST(EngineFifo, OwnsNoMemoryWhenEmpty) {
  static_assert(sizeof(Fifo<std::string>) == sizeof(void*));
  Fifo<std::string> q;
  EXPECT_TRUE(q.empty());
  for (int i = 0; i < 100; ++i) q.push_back(std::to_string(i));
  EXPECT_EQ(q.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(q.front(), std::to_string(i));
    if (i < 99) {
      EXPECT_EQ(q[1], std::to_string(i + 1));
    }
    q.pop_front();
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
}

TEST(EngineFifo, InterleavedPushPopStaysOrdered) {
  Fifo<int> q;
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 1000; ++round) {
    for (int k = 0; k < 3; ++k) q.push_back(next_in++);
    for (int k = 0; k < 2; ++k) {
      EXPECT_EQ(q.front(), next_out++);
      q.pop_front();
    }
  }
  EXPECT_EQ(q.size(), static_cast<size_t>(next_in - next_out));
}

TEST(EngineByteQueue, AppendTakeAcrossChunks) {
  ByteQueue q;
  q.Append("hello ");
  q.Append(std::string(ByteQueue::kCoalesceBytes, 'x'));  // A new chunk.
  q.Append("!");
  EXPECT_EQ(q.size(), 6 + ByteQueue::kCoalesceBytes + 1);
  EXPECT_EQ(q.Take(3), "hel");
  EXPECT_EQ(q.Take(5), "lo xx");
  std::string rest = q.Take(1 << 30);
  EXPECT_EQ(rest.size(), ByteQueue::kCoalesceBytes - 2 + 1);
  EXPECT_EQ(rest.back(), '!');
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.Take(10), "");
}

TEST(EngineByteQueue, AppendOwnedAdoptsLargeBuffersAndCoalescesSmallOnes) {
  ByteQueue q;
  std::string large(ByteQueue::kCoalesceBytes + 1, 'L');
  const char* buffer = large.data();
  q.AppendOwned("s");
  q.AppendOwned(std::move(large));
  q.AppendOwned("t");
  EXPECT_EQ(q.size(), ByteQueue::kCoalesceBytes + 3);
  absl::string_view spans[4];
  ASSERT_EQ(q.Peek(spans, 4), 3u);
  EXPECT_EQ(spans[0], "s");
  EXPECT_EQ(spans[1].data(), buffer);  // Not copied.
  EXPECT_EQ(spans[2], "t");
  EXPECT_EQ(q.Take(1), "s");
  EXPECT_EQ(q.Take(1 << 30).size(), ByteQueue::kCoalesceBytes + 2);
  EXPECT_TRUE(q.empty());
}

TEST(EngineByteQueue, TakeWholeFrontChunkThenTheRest) {
  ByteQueue q;
  q.Append("ab");
  const std::string big(ByteQueue::kCoalesceBytes, 'c');
  q.Append(big);
  EXPECT_EQ(q.Take(2), "ab");  // The whole first chunk, moved out.
  EXPECT_EQ(q.size(), big.size());
  EXPECT_EQ(q.Take(big.size()), big);
  EXPECT_TRUE(q.empty());
  q.Append("x");
  EXPECT_EQ(q.Take(1), "x");
  EXPECT_TRUE(q.empty());
}

TEST(EngineByteQueue, PeekAndConsume) {
  ByteQueue q;
  q.Append("abc");
  q.Append(std::string(ByteQueue::kCoalesceBytes, 'd'));
  absl::string_view spans[4];
  ASSERT_EQ(q.Peek(spans, 4), 2u);
  EXPECT_EQ(spans[0], "abc");
  q.Consume(2);
  ASSERT_EQ(q.Peek(spans, 1), 1u);
  EXPECT_EQ(spans[0], "c");
  q.Consume(1 + ByteQueue::kCoalesceBytes);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.Peek(spans, 4), 0u);
  q.Append("z");
  q.Clear();
  EXPECT_EQ(q.size(), 0u);
}

TEST(EngineByteQueue, FindEndAcrossChunkBoundaries) {
  ByteQueue q;
  q.Append(std::string(ByteQueue::kCoalesceBytes, 'a'));
  q.Append("b\r");  // Coalescing is full: a new chunk.
  q.Append(std::string(ByteQueue::kCoalesceBytes, 'c'));
  q.Append("\nd");
  const size_t first = ByteQueue::kCoalesceBytes;
  EXPECT_EQ(q.FindEnd("ab", 0, q.size()), first + 1);
  // "\r\n" spans three chunks: "...b\r" | "ccc...c" | "\nd" does not
  // contain it, but "c\n" does, across the last boundary.
  EXPECT_EQ(q.FindEnd("\r\n", 0, q.size()), std::string::npos);
  EXPECT_EQ(q.FindEnd("c\nd", 0, q.size()), q.size());
  // The limit bounds where a match may end.
  EXPECT_EQ(q.FindEnd("c\nd", 0, q.size() - 1), std::string::npos);
  // `from` skips earlier occurrences.
  EXPECT_EQ(q.FindEnd("aa", 0, q.size()), 2u);
  EXPECT_EQ(q.FindEnd("aa", 10, q.size()), 12u);
  // After a partial Take the front offset is honoured.
  q.Take(first);
  EXPECT_EQ(q.FindEnd("b", 0, q.size()), 1u);
  EXPECT_EQ(q.FindEnd("", 0, q.size()), std::string::npos);
}

TEST(EngineAddress, ParsePort) {
  EXPECT_EQ(ParsePort("")->value(), 0);
  EXPECT_EQ(ParsePort("8080")->value(), 8080);
  EXPECT_FALSE(ParsePort("www")->has_value());
  EXPECT_EQ(ParsePort("65536").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePort("99999999999").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EngineAddress, LiteralsAndUnixPaths) {
  EXPECT_TRUE(ParseIpLiteral("127.0.0.1").has_value());
  EXPECT_TRUE(ParseIpLiteral("[::1]").has_value());
  EXPECT_FALSE(ParseIpLiteral("localhost").has_value());
  EXPECT_FALSE(ParseIpLiteral("").has_value());
  EXPECT_TRUE(UnixEndpoint(std::string(107, 'a')).ok());
  EXPECT_EQ(UnixEndpoint(std::string(108, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnixEndpoint("").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto abstract = UnixEndpoint("@name");
  ASSERT_TRUE(abstract.ok());
  PackedAddress back =
      PackedAddress::FromKernel(abstract->data(), abstract->size());
  EXPECT_EQ(back.Unpack().unix_path, "@name");
  auto path = UnixEndpoint("/tmp/s");
  EXPECT_EQ(
      PackedAddress::FromKernel(path->data(), path->size()).Unpack().ToString(),
      "unix:/tmp/s");
  EXPECT_EQ(PackedAddress::Ip(*ParseIpLiteral("::1"), 80).ToString(),
            "[::1]:80");
  EXPECT_LE(sizeof(PackedAddress), 48u);
}

TEST(EngineNetError, MapsErrnoToStatus) {
  auto status = [](int e) {
    return ErrorStatus("bind 0.0.0.0:80",
                       std::error_code(e, std::system_category()));
  };
  EXPECT_EQ(status(EACCES).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(status(EACCES).message(), "bind 0.0.0.0:80: permission denied");
  EXPECT_EQ(status(EADDRINUSE).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(status(ECONNREFUSED).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status(ETIMEDOUT).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(status(ECONNRESET).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(status(EMFILE).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorStatus("resolve x", asio::error::host_not_found).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      ErrorStatus("resolve x", asio::error::host_not_found_try_again).code(),
      absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sockagent
