// ByteQueue (agent/byte_queue.h): chunks, coalescing, peeking, taking and
// searching across chunk boundaries.
#include "agent/byte_queue.h"

#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace sockagent {
namespace {

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

}  // namespace
}  // namespace sockagent
