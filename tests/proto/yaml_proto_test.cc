// proto/yaml_proto.h against the API's own messages: what a person writes
// in a config file, and what sockctl's `-o yaml` prints, read back.
#include "proto/yaml_proto.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "sockagent/v1/agent.pb.h"

namespace sockagent {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::sockagent::v1;

TEST(YamlToMessage, ReadsAServerAsAPersonWritesIt) {
  v1::StartServerRequest req;
  ASSERT_TRUE(YamlToMessage(R"(
transport: tcp
bind: {host: 127.0.0.1, port: 9000}
behavior:
  greeting: {data: VGhhbmsgeW91IGZvciBjb25uZWN0aW5nCg==, closeAfter: true}
labels: {team: sre, "port": "9000"}
ttl: 1m30s
idle_timeout: 500ms
reuse_address: false
)",
                            &req)
                  .ok());
  EXPECT_EQ(req.transport(), v1::TRANSPORT_TCP);
  EXPECT_EQ(req.bind().host(), "127.0.0.1");
  EXPECT_EQ(req.bind().port(), 9000);
  EXPECT_EQ(req.behavior().greeting().data(), "Thank you for connecting\n");
  EXPECT_TRUE(req.behavior().greeting().close_after());
  EXPECT_EQ(req.labels().at("team"), "sre");
  EXPECT_EQ(req.labels().at("port"), "9000");
  EXPECT_EQ(req.ttl().seconds(), 90);
  EXPECT_EQ(req.idle_timeout().nanos(), 500000000);
  ASSERT_TRUE(req.has_reuse_address());
  EXPECT_FALSE(req.reuse_address());
}

TEST(YamlToMessage, ReadsBackWhatTheJsonMappingPrints) {
  v1::StartServerRequest original;
  original.set_transport(v1::TRANSPORT_UDP);
  original.mutable_bind()->set_host("::1");
  original.mutable_bind()->set_port(53);
  original.mutable_behavior()->mutable_echo();
  (*original.mutable_labels())["a"] = "1";
  original.mutable_ttl()->set_seconds(5);
  original.mutable_ttl()->set_nanos(250000000);
  original.set_backlog(17);
  std::string json;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(original, &json).ok());
  // JSON is YAML (flow style).
  v1::StartServerRequest back;
  absl::Status s = YamlToMessage(json, &back);
  ASSERT_TRUE(s.ok()) << s << " in " << json;
  EXPECT_EQ(back.SerializeAsString(), original.SerializeAsString()) << json;
}

TEST(YamlToMessage, EnumsByFullNameShortNameOrNumber) {
  v1::StartServerRequest req;
  for (const char* text : {"TRANSPORT_UNIX", "unix", "Unix", "3"}) {
    ASSERT_TRUE(YamlToMessage(absl::StrCat("transport: ", text), &req).ok())
        << text;
    EXPECT_EQ(req.transport(), v1::TRANSPORT_UNIX) << text;
  }
  absl::Status s = YamlToMessage("transport: sctp", &req);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("line 1, column 12: transport: "
                                     "\"sctp\" is not a Transport ("));
  EXPECT_THAT(s.message(), HasSubstr("TRANSPORT_TCP"));
}

TEST(YamlToMessage, MistakesSayLineColumnPathAndWhat) {
  v1::StartServerRequest req;
  struct Case {
    const char* yaml;
    const char* want;
  } cases[] = {
      {"bind:\n  host: x\n  prot: 80\n",
       "line 3, column 3: bind: unknown field \"prot\" (Endpoint has host, "
       "port"},
      // Parsed: the range (0..65535) is the service's business.
      {"bind: {port: 70000}", ""},
      {"bind: {port: -1}",
       "line 1, column 14: bind.port: \"-1\" is not an "
       "unsigned 32-bit integer"},
      {"backlog: ten", "backlog: \"ten\" is not a 32-bit integer"},
      {"reuse_address: yes", "reuse_address: \"yes\" is not true or false"},
      {"ttl: soon", "ttl: \"soon\" is not a duration"},
      {"ttl: [1]", "ttl: a duration is a string"},
      {"labels: [a, b]", "labels: expected a mapping"},
      {"bind: 9000", "bind: expected a mapping (Endpoint: host, port"},
      {"behavior: {echo: {}, hold: {}}",
       "behavior: \"hold\" and \"echo\" are both set; kind takes one"},
      {"behavior: {greeting: {data: \"not base64!\"}}",
       "behavior.greeting.data: \"not base64!\" is not base64"},
      {"transport: tcp\n  bad indent: [", "not valid YAML"},
      {"- a\n- b\n", "expected a mapping (StartServerRequest: transport"},
  };
  for (const Case& c : cases) {
    absl::Status s = YamlToMessage(c.yaml, &req);
    if (c.want[0] == '\0') {
      EXPECT_TRUE(s.ok()) << c.yaml << ": " << s;
      continue;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(s.message(), HasSubstr(c.want)) << c.yaml;
  }
}

TEST(YamlToMessage, UnknownFieldsCanBeIgnoredOnRequest) {
  v1::StartServerRequest req;
  EXPECT_FALSE(YamlToMessage("id: srv-1\ntransport: tcp", &req).ok());
  ASSERT_TRUE(YamlToMessage("id: srv-1\ntransport: tcp", &req,
                            {.ignore_unknown_fields = true})
                  .ok());
  EXPECT_EQ(req.transport(), v1::TRANSPORT_TCP);
}

TEST(YamlToMessage, EmptyAndNullMeanDefaults) {
  v1::StartServerRequest req;
  req.set_backlog(3);
  ASSERT_TRUE(YamlToMessage("", &req).ok());
  EXPECT_EQ(req.ByteSizeLong(), 0u);
  ASSERT_TRUE(YamlToMessage("backlog: ~\nlabels:\n", &req).ok());
  EXPECT_EQ(req.ByteSizeLong(), 0u);
}

TEST(YamlToMessage, AliasBombsAndDeepNestingAreBounded) {
  // A ~5 KB file naming one 300-label server 1,000 times: 300,000 labels
  // if walked. The node bound stops the walk.
  std::string yaml = "big: &big {labels: {";
  for (int i = 0; i < 300; ++i) yaml += absl::StrCat("k", i, ": v, ");
  yaml += "}}\nservers: [";
  for (int i = 0; i < 1000; ++i) yaml += "*big, ";
  yaml += "]\n";
  v1::ListServersResponse list;
  absl::Status s = YamlToMessage(yaml, &list, {.ignore_unknown_fields = true});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("more than 100000 YAML nodes"));

  std::string deep = "servers:\n- behavior:\n    greeting:\n      data: ";
  for (int i = 0; i < 100; ++i) deep += "[";
  EXPECT_EQ(YamlToMessage(deep, &list).code(),
            absl::StatusCode::kInvalidArgument);

  // Many nodes, each cheap: the bound says so.
  std::string many = "servers:\n";
  for (int i = 0; i < 12000; ++i) many += "- {}\n";
  s = YamlToMessage(many, &list, {.max_nodes = 10000});
  EXPECT_THAT(s.message(), HasSubstr("more than 10000 YAML nodes"));
}

}  // namespace
}  // namespace sockagent
