#include "agent/labels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace sockagent {
namespace {

using ::testing::HasSubstr;

TEST(Labels, AtEveryBoundIsAccepted) {
  Labels labels;
  labels[std::string(63, 'k')] = std::string(256, 'v');
  labels[std::string(189, 'p') + "/" + std::string(63, 'n')] = "";
  EXPECT_TRUE(CheckLabels(labels, "labels").ok());
  Labels many;
  for (int i = 0; i < 64; ++i) {
    std::string key = absl::StrCat("k", 1000 + i);
    key.resize(63, 'k');
    many[key] = std::string(193, 'v');
  }
  EXPECT_EQ(LabelsBytes(many), 16384u);
  EXPECT_TRUE(CheckLabels(many, "labels").ok());
  many.begin()->second.push_back('v');
  absl::Status s = CheckLabels(many, "labels");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("at most 16384 bytes of labels"));
}

TEST(Labels, EachBoundOneOverIsRefusedNamingIt) {
  struct Case {
    Labels labels;
    std::string names;
  };
  Labels count;
  for (int i = 0; i < 65; ++i) count[absl::StrCat("k", i)] = "v";
  const Case cases[] = {
      {count, "at most 64 labels per object"},
      {{{std::string(64, 'k'), "v"}}, "at most 63 bytes (253 with a prefix/)"},
      {{{std::string(190, 'p') + "/" + std::string(63, 'n'), "v"}},
       "at most 253 bytes with a prefix/"},
      {{{"example.com/" + std::string(64, 'n'), "v"}}, "1 to 63 bytes"},
      {{{"example.com/", "v"}}, "1 to 63 bytes"},
      {{{"k", std::string(257, 'v')}}, "at most 256 bytes"},
      {{{"", "v"}}, "a label key is empty"},
  };
  for (const Case& c : cases) {
    absl::Status s = CheckLabels(c.labels, "label_selector");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.names;
    EXPECT_THAT(s.message(), HasSubstr(c.names));
    EXPECT_THAT(s.message(), HasSubstr("label_selector: "));
  }
}

}  // namespace
}  // namespace sockagent
