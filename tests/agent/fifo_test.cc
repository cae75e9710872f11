// Fifo (agent/fifo.h): the one-pointer queue that idle connections keep
// empty.
#include "agent/fifo.h"

#include <string>

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

}  // namespace
}  // namespace sockagent
