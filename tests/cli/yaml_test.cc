// -o yaml: protobuf JSON re-emitted as YAML block style, keys in order,
// strings plain only where YAML reads them back unchanged.
#include "cli/yaml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace sockctl {
namespace {

using ::testing::HasSubstr;

std::string Yaml(const std::string& json) {
  absl::StatusOr<std::string> yaml = JsonToYaml(json);
  EXPECT_TRUE(yaml.ok()) << yaml.status();
  return yaml.ok() ? *yaml : "";
}

TEST(JsonToYaml, ObjectsListsAndScalarsInBlockStyle) {
  EXPECT_EQ(Yaml(R"({"server":{"id":"srv-1","localAddresses":[)"
                 R"({"ip":"127.0.0.1","port":41234},{"ip":"::1","port":7}],)"
                 R"("labels":{},"tags":[],"ok":true,"none":null,)"
                 R"("ports":[80,443],"nested":[[1],[]]}})"),
            "server:\n"
            "  id: srv-1\n"
            "  localAddresses:\n"
            "  - ip: \"127.0.0.1\"\n"
            "    port: 41234\n"
            "  - ip: \"::1\"\n"
            "    port: 7\n"
            "  labels: {}\n"
            "  tags: []\n"
            "  ok: true\n"
            "  none: null\n"
            "  ports:\n"
            "  - 80\n"
            "  - 443\n"
            "  nested:\n"
            "  -\n"
            "    - 1\n"
            "  - []\n");
}

TEST(JsonToYaml, KeysKeepTheirOrder) {
  EXPECT_EQ(Yaml(R"({"zeta":1,"alpha":2,"mid":3})"),
            "zeta: 1\nalpha: 2\nmid: 3\n");
}

// What protobuf's JSON prints as strings stays a string in YAML: 64-bit
// integers, base64 bytes, words YAML reads as booleans or null, strings
// with ": " or leading digits, escapes.
TEST(JsonToYaml, AmbiguousStringsAreQuoted) {
  EXPECT_EQ(Yaml(R"({"bytesReceived":"1234"})"), "bytesReceived: \"1234\"\n");
  EXPECT_EQ(Yaml(R"({"data":"aGVsbG8="})"), "data: aGVsbG8=\n");
  EXPECT_EQ(Yaml(R"({"data":"+GVsbG8="})"), "data: \"+GVsbG8=\"\n");
  for (const char* word : {"yes", "No", "true", "null", "off", "y", "~", "",
                           "-x", "a: b", "a #b", "trailing ", "colon:"}) {
    const std::string yaml = Yaml(std::string(R"({"k":")") + word + R"("})");
    EXPECT_EQ(yaml, std::string("k: \"") + word + "\"\n") << word;
  }
  EXPECT_EQ(Yaml(R"({"k":"a\nb\u0001\"c"})"), "k: \"a\\nb\\u0001\\\"c\"\n");
  EXPECT_EQ(Yaml(R"({"k":"Thank you for connecting"})"),
            "k: Thank you for connecting\n");
  EXPECT_EQ(Yaml(R"({"weird key":1,"team-a":2})"), "weird key: 1\nteam-a: 2\n");
}

TEST(JsonToYaml, UnicodeEscapesBecomeUtf8) {
  EXPECT_EQ(Yaml(R"({"k":"\u00e9\ud83d\ude00"})"),
            "k: \"\xc3\xa9\xf0\x9f\x98\x80\"\n");
}

TEST(JsonToYaml, MalformedJsonIsAnError) {
  for (const char* bad : {"", "{", "{\"a\"}", "{\"a\":1,}", "[1 2]", "\"x",
                          "{\"a\":1} x", "tru"}) {
    EXPECT_FALSE(JsonToYaml(bad).ok()) << bad;
  }
  std::string deep(100, '[');
  deep += std::string(100, ']');
  absl::StatusOr<std::string> yaml = JsonToYaml(deep);
  ASSERT_FALSE(yaml.ok());
  EXPECT_THAT(std::string(yaml.status().message()), HasSubstr("deeply"));
}

}  // namespace
}  // namespace sockctl
