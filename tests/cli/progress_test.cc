#include "cli/progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace sockctl {
namespace {

using ::testing::HasSubstr;

TEST(HumanBytes, PicksTheUnit) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(64.0 * 1024 * 1024), "64.0 MiB");
  EXPECT_EQ(HumanBytes(3.0 * 1024 * 1024 * 1024), "3.0 GiB");
}

TEST(ProgressLine, BarPercentSizesAndRate) {
  const std::string half =
      ProgressLine(8 << 20, 16 << 20, absl::Seconds(2), /*width=*/10);
  EXPECT_EQ(half, "[#####.....]  50%  8.0 MiB / 16.0 MiB  4.0 MiB/s");
  EXPECT_THAT(ProgressLine(16 << 20, 16 << 20, absl::Seconds(1), 10),
              HasSubstr("[##########] 100%"));
  // More than announced (a file that grew) stays at 100%.
  EXPECT_THAT(ProgressLine(20 << 20, 16 << 20, absl::Seconds(1), 10),
              HasSubstr("[##########] 100%"));
}

TEST(ProgressLine, UnknownTotalShowsBytesAndRate) {
  EXPECT_EQ(ProgressLine(3 << 20, 0, absl::Seconds(3)), "3.0 MiB  1.0 MiB/s");
  EXPECT_EQ(ProgressLine(0, 0, absl::ZeroDuration()), "0 B  -");
}

TEST(ProgressBar, DisabledDrawsNothingEnabledEndsTheLine) {
  char* text = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&text, &size);
  {
    ProgressBar off(100, /*enabled=*/false, out);
    off.Update(50);
    off.Finish(100);
  }
  std::fflush(out);
  EXPECT_EQ(size, 0u);
  ProgressBar on(100, /*enabled=*/true, out);
  on.Update(50);
  on.Finish(100);
  std::fclose(out);
  const std::string drawn(text, size);
  free(text);
  EXPECT_THAT(drawn, HasSubstr("\r[###"));
  EXPECT_THAT(drawn, HasSubstr("100%"));
  EXPECT_EQ(drawn.back(), '\n');
}

}  // namespace
}  // namespace sockctl
