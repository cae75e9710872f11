// cli/perf.h: the quantities of `sockctl perf`'s flags, the pairs plan and
// its time budget, and the summary of a run from the two agents' answers.
#include "cli/perf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

namespace sockctl {
namespace {

using ::testing::HasSubstr;

TEST(PerfArgs, RatesArePowersOfAThousandAndByteCountsOf1024) {
  EXPECT_EQ(*ParseRate("--rate", "100M"), 100'000'000u);
  EXPECT_EQ(*ParseRate("--rate", "1.5G"), 1'500'000'000u);
  EXPECT_EQ(*ParseRate("--rate", "800kbit/s"), 800'000u);
  EXPECT_EQ(*ParseRate("--rate", "2Mbps"), 2'000'000u);
  EXPECT_EQ(*ParseRate("--rate", "1234"), 1234u);
  EXPECT_EQ(*ParseByteCount("--bytes", "10M"), 10u << 20);
  EXPECT_EQ(*ParseByteCount("--bytes", "1GB"), 1u << 30);
  EXPECT_EQ(*ParseByteCount("--bytes", "4096"), 4096u);
  for (const char* bad : {"", "fast", "-1M", "1X", "M", "1e30", "nan"}) {
    absl::StatusOr<uint64_t> r = ParseRate("--rate", bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("--rate: '")) << bad;
  }
}

TEST(PerfArgs, PairsNameAgentsEvenWhenNamesAreAddresses) {
  const std::vector<std::string> agents = {"a", "b", "127.0.0.1:7000"};
  auto pairs = ParsePairs("a:b,b:127.0.0.1:7000", agents);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_EQ(*pairs, (std::vector<std::pair<size_t, size_t>>{{0, 1}, {1, 2}}));
  EXPECT_THAT(ParsePairs("a:a", agents).status().message(),
              HasSubstr("to itself"));
  EXPECT_THAT(ParsePairs("a:c", agents).status().message(),
              HasSubstr("does not name two agents"));
  EXPECT_THAT(ParsePairs("ab", agents).status().message(),
              HasSubstr("is not SRC:DST"));
  EXPECT_FALSE(ParsePairs(",", agents).ok());
  EXPECT_EQ(AllPairs(3).size(), 6u);
}

TEST(PerfArgs, ManyAgentsNeedABudgetThatLeavesEachPairEnough) {
  // 8 agents: 56 pairs without a budget is allowed.
  EXPECT_EQ(*PairDuration(56, 1, absl::Seconds(2), absl::ZeroDuration(),
                          /*all_pairs=*/true, 8),
            absl::Seconds(2));
  // 128 agents: says how long it would take and what to give.
  absl::StatusOr<absl::Duration> d = PairDuration(
      128 * 127, 1, absl::Seconds(5), absl::ZeroDuration(), true, 128);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("16256 runs"));
  EXPECT_THAT(d.status().message(), HasSubstr("--budget"));
  // A budget shortens each pair to fit: 10 pairs, 2 at a time, 10 s ->
  // 2 s a wave, minus the overhead.
  d = PairDuration(10, 2, absl::Seconds(5), absl::Seconds(10), false, 5);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, absl::Seconds(2) - kPairOverhead);
  // Never longer than asked.
  EXPECT_EQ(*PairDuration(2, 1, absl::Seconds(1), absl::Hours(1), false, 2),
            absl::Seconds(1));
  // Too small a budget.
  d = PairDuration(16256, 1, absl::Seconds(5), absl::Minutes(10), true, 128);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("needs at least"));
}

TEST(PerfSummary, UdpLossIsSentMinusReceivedOfThisRunOnly) {
  sockagent::v1::PerfResponse response;
  response.set_run_id(5);
  response.set_bytes(100 * 1000);
  response.set_datagrams(100);
  response.mutable_duration()->set_seconds(1);
  auto* s = response.add_streams();
  s->set_datagrams(98);
  s->set_send_errors(2);  // Counted as sent-and-lost.
  std::vector<sockagent::v1::Connection> receiver(3);
  receiver[0].mutable_perf()->set_run_id(5);
  receiver[0].mutable_perf()->set_datagrams(90);
  receiver[0].mutable_perf()->set_bytes(90000);
  receiver[0].mutable_perf()->set_out_of_order(3);
  receiver[0].mutable_perf()->mutable_jitter()->set_nanos(200000);
  receiver[0].mutable_perf()->mutable_first_at()->set_seconds(100);
  receiver[0].mutable_perf()->mutable_last_at()->set_seconds(101);
  receiver[1].mutable_perf()->set_run_id(4);  // An earlier run: skipped.
  receiver[1].mutable_perf()->set_datagrams(1000);
  // receiver[2]: no perf header at all: skipped.
  sockctl::output::PerfRun run = Summarize(response, receiver, /*udp=*/true);
  EXPECT_EQ(run.receiver().datagrams(), 90u);
  EXPECT_EQ(run.receiver().lost(), 10u);
  EXPECT_DOUBLE_EQ(run.receiver().loss_percent(), 10.0);
  EXPECT_EQ(run.receiver().out_of_order(), 3u);
  EXPECT_EQ(run.receiver().jitter().nanos(), 200000);
  EXPECT_DOUBLE_EQ(run.receiver().bits_per_second(), 720000.0);
  EXPECT_DOUBLE_EQ(run.sender().bits_per_second(), 800000.0);

  run.set_transport("udp");
  std::ostringstream out;
  PrintPerfRun(out, run);
  EXPECT_THAT(out.str(), HasSubstr("10/100 (10%)"));
  EXPECT_THAT(out.str(), HasSubstr("0.200ms"));
}

TEST(PerfSummary, FormatsLikeIperf3) {
  EXPECT_EQ(FormatBitRate(9.41e9), "9.41 Gbit/s");
  EXPECT_EQ(FormatBitRate(812e6), "812 Mbit/s");
}

}  // namespace
}  // namespace sockctl
