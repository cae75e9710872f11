// The proto <-> engine enum conversions of service/convert.h: every value
// the API defines maps to its engine counterpart and back, by name, not by
// matching numbers.
#include "service/convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace sockagent {
namespace {

using ::testing::HasSubstr;

TEST(EventKindConversion, EveryApiKindRoundTrips) {
  const google::protobuf::EnumDescriptor* kinds = v1::EventKind_descriptor();
  for (int i = 0; i < kinds->value_count(); ++i) {
    const int number = kinds->value(i)->number();
    if (number == v1::EVENT_KIND_UNSPECIFIED) continue;
    auto engine_kind = EventKindFromProto(number);
    ASSERT_TRUE(engine_kind.ok()) << kinds->value(i)->name();
    EXPECT_EQ(EventKindToProto(*engine_kind), number)
        << kinds->value(i)->name();
  }
}

TEST(EventKindConversion, UnspecifiedAndUnknownKindsAreRefused) {
  // One past the API's highest kind: unknown however many kinds are added.
  const google::protobuf::EnumDescriptor* kinds = v1::EventKind_descriptor();
  int past_last = 0;
  for (int i = 0; i < kinds->value_count(); ++i) {
    past_last = std::max(past_last, kinds->value(i)->number() + 1);
  }
  for (int kind : {0, -1, past_last, 999}) {
    auto engine_kind = EventKindFromProto(kind);
    ASSERT_FALSE(engine_kind.ok()) << kind;
    EXPECT_EQ(engine_kind.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(engine_kind.status().message(),
                HasSubstr(absl::StrCat("watch: unknown event kind ", kind)));
  }
  EXPECT_EQ(EventKindToProto(EngineEventKind::kUnspecified),
            v1::EVENT_KIND_UNSPECIFIED);
}

TEST(EventKindConversion, EngineEventsKeepTheirKind) {
  EngineEvent event;
  event.kind = EngineEventKind::kConnectionPeerClosed;
  v1::Event out;
  EngineEventToProto(event, &out);
  EXPECT_EQ(out.kind(), v1::EVENT_KIND_CONNECTION_PEER_CLOSED);
}

}  // namespace
}  // namespace sockagent
