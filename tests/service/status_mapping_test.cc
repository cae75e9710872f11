// The service's edge: AnswerDeadline (when a waiting call, Receive, answers
// so its OK reaches the caller before the caller's own deadline) and
// ToGrpcStatus's printable, bounded messages.
#include "service/status_mapping.h"

#include <string>

#include "gtest/gtest.h"

namespace sockagent {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

TEST(AnswerDeadline, InfiniteStaysInfinite) {
  EXPECT_EQ(AnswerDeadline(absl::InfiniteFuture(), kNow),
            absl::InfiniteFuture());
}

TEST(AnswerDeadline, ShortDeadlinesKeepTheMinimumMargin) {
  EXPECT_EQ(AnswerDeadline(kNow + absl::Milliseconds(500), kNow),
            kNow + absl::Milliseconds(500) - kAnswerMarginMin);
}

TEST(AnswerDeadline, LongDeadlinesKeepAFractionOfTheTimeLeft) {
  EXPECT_EQ(AnswerDeadline(kNow + absl::Seconds(100), kNow),
            kNow + absl::Seconds(95));
}

TEST(AnswerDeadline, TooCloseOrPastMeansAnswerAtOnce) {
  EXPECT_LE(AnswerDeadline(kNow + absl::Milliseconds(20), kNow), kNow);
  EXPECT_LE(AnswerDeadline(kNow - absl::Seconds(1), kNow), kNow);
}

TEST(PrintableStatusMessage, ControlBytesAreEscaped) {
  EXPECT_EQ(PrintableStatusMessage(std::string("id 'a\0b\x1b[2J'\n", 13)),
            "id 'a\\x00b\\x1b[2J'\\x0a");
  EXPECT_EQ(PrintableStatusMessage("caf\xc3\xa9"), "caf\\xc3\\xa9");
  // Printable text, a backslash included, is kept as it is.
  EXPECT_EQ(PrintableStatusMessage("conn 'a\\x00' not found"),
            "conn 'a\\x00' not found");
}

TEST(PrintableStatusMessage, LongMessagesAreCut) {
  const std::string out =
      PrintableStatusMessage(std::string(10 * kMaxStatusMessageBytes, 'a'));
  EXPECT_LE(out.size(), kMaxStatusMessageBytes + 32);
  EXPECT_NE(out.find("(message cut)"), std::string::npos);
}

TEST(ToGrpcStatus, KeepsTheCodeAndMakesTheMessagePrintable) {
  const grpc::Status s =
      ToGrpcStatus(absl::NotFoundError(std::string("x\0y", 3)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "x\\x00y");
}

}  // namespace
}  // namespace sockagent
