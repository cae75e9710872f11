// LogLimiter: one line per key per interval with the count of those not
// written, a bounded key table with an overflow entry, and PeerIp.
#include "service/log_limiter.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sockagent {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(LogLimiter, OneLinePerIntervalCountingTheOthers) {
  LogLimiter limiter({.interval = absl::Seconds(10), .max_keys = 8});
  LogLimiter::Decision d = limiter.Admit("127.0.0.1", kT0);
  EXPECT_TRUE(d.log);
  EXPECT_EQ(d.suppressed, 0u);
  for (int i = 0; i < 11999; ++i) {
    ASSERT_FALSE(limiter.Admit("127.0.0.1", kT0 + absl::Seconds(9)).log);
  }
  d = limiter.Admit("127.0.0.1", kT0 + absl::Seconds(10));
  EXPECT_TRUE(d.log);
  EXPECT_EQ(d.suppressed, 11999u);
  // Another key has its own window.
  EXPECT_TRUE(limiter.Admit("::1", kT0 + absl::Seconds(10)).log);
}

TEST(LogLimiter, KeysBeyondTheCapShareOneOverflowEntry) {
  LogLimiter limiter({.interval = absl::Seconds(10), .max_keys = 4});
  int logged = 0;
  for (int i = 0; i < 1000; ++i) {
    const LogLimiter::Decision d =
        limiter.Admit(absl::StrCat("10.0.", i / 256, ".", i % 256), kT0);
    if (d.log) ++logged;
  }
  EXPECT_EQ(logged, 5);  // 4 keys + the overflow entry.
  EXPECT_EQ(limiter.Tracked(), 4u);
  // Once the interval passed, expired keys are swept to make room. (The
  // keys are only strings: nothing is ever sent to these addresses.)
  const LogLimiter::Decision d =
      limiter.Admit("192.0.2.1", kT0 + absl::Seconds(11));
  EXPECT_TRUE(d.log);
  EXPECT_EQ(d.key, "192.0.2.1");
  EXPECT_EQ(limiter.Tracked(), 1u);
}

TEST(PeerIp, DropsThePort) {
  EXPECT_EQ(PeerIp("ipv4:127.0.0.1:40312"), "127.0.0.1");
  EXPECT_EQ(PeerIp("ipv6:[::1]:40312"), "::1");
  EXPECT_EQ(PeerIp("ipv6:%5B::1%5D:40312"), "::1");  // gRPC 1.51's form.
  EXPECT_EQ(PeerIp("ipv6:%5Bfe80::1%25eth0%5D:1"), "fe80::1%25eth0");
  EXPECT_EQ(PeerIp("unix:/run/x.sock"), "unix:/run/x.sock");
  EXPECT_EQ(PeerIp(""), "");
}

}  // namespace
}  // namespace sockagent
