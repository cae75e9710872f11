// proto/agent_config.h: desired-state files as the daemon's --config and
// `sockctl apply -f` read them.
#include "proto/agent_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sockagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(AgentConfig, ServersWithTheirPositions) {
  std::vector<std::string> positions;
  auto config = ParseAgentConfig(R"(servers:
  - name: web
    bind: {host: 127.0.0.1, port: 9000}
    behavior: {echo: {}}
  - {name: dns, transport: udp}
)",
                                 &positions);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->servers_size(), 2);
  EXPECT_EQ(config->servers(0).bind().port(), 9000u);
  EXPECT_EQ(config->servers(1).transport(), v1::TRANSPORT_UDP);
  EXPECT_THAT(positions,
              ElementsAre("line 2, column 5: ", "line 5, column 5: "));
}

TEST(AgentConfig, EveryServerNeedsAName) {
  auto config = ParseAgentConfig("servers:\n  - {name: a}\n  - {}\n");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              HasSubstr("line 3, column 5: servers[1]: no name"));
}

TEST(AgentConfig, NamesAreUnique) {
  auto config = ParseAgentConfig("servers:\n  - {name: a}\n  - {name: a}\n");
  EXPECT_THAT(config.status().message(),
              HasSubstr("line 3, column 5: servers[1].name 'a' is "
                        "servers[0]'s name already"));
}

TEST(AgentConfig, ShapeErrorsSayLineAndColumn) {
  auto config = ParseAgentConfig("servers:\n  - name: a\n    bnd: {}\n");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("line 3, column 5"));
}

TEST(AgentConfig, AListingGivesItsNamedListeningServersSpecs) {
  auto config = ParseAgentConfig(R"(servers:
  - id: srv-1
    name: web
    state: SERVER_STATE_LISTENING
    spec: {name: web, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
  - id: srv-2
    state: SERVER_STATE_LISTENING
  - id: srv-3
    name: old
    state: SERVER_STATE_STOPPED
    spec: {name: old}
)");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->servers_size(), 1);
  EXPECT_EQ(config->servers(0).name(), "web");
  EXPECT_TRUE(config->servers(0).behavior().has_echo());
}

TEST(AgentConfig, EmptyFileIsNoServers) {
  auto config = ParseAgentConfig("");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->servers_size(), 0);
}

TEST(AgentConfig, TheExampleFileReads) {
  auto config = ReadAgentConfigFile(std::string(SOCKAGENT_SOURCE_DIR) +
                                    "/examples/config/agent.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->servers_size(), 3);
}

TEST(AgentConfig, MissingFileIsNotFoundNamingIt) {
  auto config = ReadAgentConfigFile("/nonexistent/agent.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(),
              HasSubstr("/nonexistent/agent.yaml: cannot read"));
}

}  // namespace
}  // namespace sockagent
