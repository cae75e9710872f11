// The audit log's token fingerprint.
#include "service/audit_log.h"

#include <gtest/gtest.h>

namespace sockagent {
namespace {

TEST(TokenFingerprint, IsTheStartOfTheTokensSha256) {
  // SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2, appendix B.1).
  EXPECT_EQ(TokenFingerprint("Bearer abc"), "sha256:ba7816bf");
}

TEST(TokenFingerprint, SaysWhenThereIsNoUsableToken) {
  EXPECT_EQ(TokenFingerprint(""), "none");
  EXPECT_EQ(TokenFingerprint("Basic dXNlcg=="), "malformed");
  EXPECT_EQ(TokenFingerprint("Bearer "), "malformed");
}

}  // namespace
}  // namespace sockagent
