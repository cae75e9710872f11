// Named servers (StartServerRequest.name, replace, dry_run; StopServer by
// name) served in-process over real gRPC on loopback: every answer and every
// error path of the "same spec" rule.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "service/agent_service.h"
#include "tests/service/in_process_agent.h"
#include "tests/support/posix_peer.h"

namespace sockagent {
namespace {

using ::testing::HasSubstr;

class NamedServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions engine_options;
    engine_options.max_servers = 4;
    ASSERT_TRUE(agent_.Start({}, engine_options).ok());
  }

  static v1::StartServerRequest Echo(const std::string& name, int port = 0) {
    v1::StartServerRequest request;
    request.set_transport(v1::TRANSPORT_TCP);
    request.mutable_bind()->set_host("127.0.0.1");
    if (port != 0) request.mutable_bind()->set_port(port);
    request.mutable_behavior()->mutable_echo();
    request.set_name(name);
    (*request.mutable_labels())["team"] = "sre";
    return request;
  }

  grpc::Status Start(const v1::StartServerRequest& request,
                     v1::StartServerResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    return agent_.stub().StartServer(&context, request, response);
  }

  grpc::Status Stop(const v1::StopServerRequest& request,
                    v1::StopServerResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    return agent_.stub().StopServer(&context, request, response);
  }

  v1::ListServersResponse List(bool include_stopped = false) {
    v1::ListServersRequest request;
    request.set_include_stopped(include_stopped);
    v1::ListServersResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(agent_.stub().ListServers(&context, request, &response).ok());
    return response;
  }

  InProcessAgent agent_;
};

TEST_F(NamedServerTest, NameIsShownInTheAnswerAndTheListingWithItsSpec) {
  v1::StartServerResponse started;
  ASSERT_TRUE(Start(Echo("web"), &started).ok());
  EXPECT_EQ(started.outcome(), v1::START_OUTCOME_CREATED);
  EXPECT_EQ(started.server().name(), "web");
  v1::ListServersResponse list = List();
  ASSERT_EQ(list.servers_size(), 1);
  EXPECT_EQ(list.servers(0).name(), "web");
  EXPECT_EQ(list.servers(0).spec().name(), "web");
  EXPECT_EQ(list.servers(0).spec().bind().host(), "127.0.0.1");
  EXPECT_TRUE(list.servers(0).spec().behavior().has_echo());
}

TEST_F(NamedServerTest, SameNameAndSpecAnswersTheRunningServer) {
  v1::StartServerResponse first, second;
  ASSERT_TRUE(Start(Echo("web"), &first).ok());
  ASSERT_TRUE(Start(Echo("web"), &second).ok());
  EXPECT_EQ(second.outcome(), v1::START_OUTCOME_UNCHANGED);
  EXPECT_EQ(second.server().id(), first.server().id());
  EXPECT_EQ(List().servers_size(), 1);
  // Port 0 was asked for: the port it got is the same spec too (a listing
  // written back as a file), and so is port 0 again.
  const int port = first.server().local_addresses(0).port();
  v1::StartServerResponse third;
  ASSERT_TRUE(Start(Echo("web", port), &third).ok());
  EXPECT_EQ(third.outcome(), v1::START_OUTCOME_UNCHANGED);
  EXPECT_EQ(third.server().id(), first.server().id());
}

TEST_F(NamedServerTest, DifferentSpecIsAlreadyExistsNamingTheDifference) {
  v1::StartServerResponse first, second;
  ASSERT_TRUE(Start(Echo("web"), &first).ok());
  v1::StartServerRequest changed = Echo("web");
  changed.mutable_behavior()->mutable_discard();
  (*changed.mutable_labels())["team"] = "dev";
  grpc::Status s = Start(changed, &second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("'web' is taken by srv-1"));
  EXPECT_THAT(s.error_message(), HasSubstr("behavior 'echo' -> 'discard'"));
  EXPECT_THAT(s.error_message(), HasSubstr("labels"));
  EXPECT_THAT(s.error_message(), HasSubstr("set replace"));
  // Nothing changed.
  v1::ListServersResponse list = List();
  ASSERT_EQ(list.servers_size(), 1);
  EXPECT_TRUE(list.servers(0).behavior().has_echo());
}

TEST_F(NamedServerTest, ReplaceStopsTheOldAndStartsTheNew) {
  v1::StartServerResponse first, second;
  ASSERT_TRUE(Start(Echo("web"), &first).ok());
  v1::StartServerRequest changed = Echo("web");
  changed.mutable_behavior()->mutable_discard();
  changed.set_replace(true);
  ASSERT_TRUE(Start(changed, &second).ok());
  EXPECT_EQ(second.outcome(), v1::START_OUTCOME_REPLACED);
  EXPECT_THAT(second.difference(), HasSubstr("behavior 'echo' -> 'discard'"));
  EXPECT_NE(second.server().id(), first.server().id());
  v1::ListServersResponse all = List(/*include_stopped=*/true);
  ASSERT_EQ(all.servers_size(), 2);
  EXPECT_EQ(all.servers(0).state(), v1::SERVER_STATE_STOPPED);
  EXPECT_EQ(all.servers(0).stop_reason(), "replaced by StartServer");
  EXPECT_EQ(all.servers(1).state(), v1::SERVER_STATE_LISTENING);
  EXPECT_TRUE(all.servers(1).behavior().has_discard());
  // replace with the same spec changes nothing.
  v1::StartServerResponse third;
  ASSERT_TRUE(Start(changed, &third).ok());
  EXPECT_EQ(third.outcome(), v1::START_OUTCOME_UNCHANGED);
  EXPECT_EQ(third.server().id(), second.server().id());
}

TEST_F(NamedServerTest, FailedReplaceLeavesTheOldStoppedAndTheNameFree) {
  uint16_t taken = 0;
  testing::Fd other = testing::TcpListen(4, &taken);
  ASSERT_TRUE(other.valid());
  v1::StartServerResponse first, second;
  ASSERT_TRUE(Start(Echo("web"), &first).ok());
  v1::StartServerRequest changed = Echo("web", taken);
  changed.set_replace(true);
  grpc::Status s = Start(changed, &second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(),
              HasSubstr("the old server srv-1 is stopped and its name is "
                        "free; starting the new one failed: bind"));
  EXPECT_EQ(List().servers_size(), 0);
  // The name is free: a plain start takes it.
  v1::StartServerResponse third;
  ASSERT_TRUE(Start(Echo("web"), &third).ok());
  EXPECT_EQ(third.outcome(), v1::START_OUTCOME_CREATED);
}

TEST_F(NamedServerTest, BadNamesAreInvalidArgumentNamingTheField) {
  for (const char* name :
       {"Web", "-web", "web-", "we_b", "web.example", "srv-12",
        "a123456789a123456789a123456789a123456789a123456789a1234567890123"}) {
    v1::StartServerResponse response;
    grpc::Status s = Start(Echo(name), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_THAT(s.error_message(), HasSubstr("name '")) << name;
  }
  for (const char* name : {"w", "srv-a", "web-1", "0"}) {
    v1::StartServerResponse response;
    EXPECT_TRUE(Start(Echo(name), &response).ok()) << name;
  }
}

TEST_F(NamedServerTest, StopByNameFreesTheName) {
  v1::StartServerResponse first, second;
  ASSERT_TRUE(Start(Echo("web"), &first).ok());
  v1::StopServerRequest stop;
  stop.set_name("web");
  v1::StopServerResponse stopped;
  ASSERT_TRUE(Stop(stop, &stopped).ok());
  EXPECT_EQ(stopped.servers_stopped(), 1u);
  EXPECT_EQ(stopped.server_ids(0), first.server().id());
  grpc::Status again = Stop(stop, &stopped);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(again.error_message(), HasSubstr("no listening server is named"));
  v1::StartServerRequest changed = Echo("web");
  changed.mutable_behavior()->mutable_hold();
  ASSERT_TRUE(Start(changed, &second).ok());
  EXPECT_EQ(second.outcome(), v1::START_OUTCOME_CREATED);
}

TEST_F(NamedServerTest, StopTakesOneOfIdNameOrSelector) {
  v1::StopServerRequest stop;
  stop.set_name("web");
  stop.set_id("srv-1");
  v1::StopServerResponse response;
  EXPECT_EQ(Stop(stop, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  stop.clear_id();
  (*stop.mutable_label_selector())["a"] = "b";
  EXPECT_EQ(Stop(stop, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  stop.clear_label_selector();
  stop.set_name("Not A Label");
  grpc::Status s = Stop(stop, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("name 'Not A Label'"));
}

TEST_F(NamedServerTest, DryRunChangesNothing) {
  v1::StartServerRequest request = Echo("web");
  request.set_dry_run(true);
  v1::StartServerResponse response;
  ASSERT_TRUE(Start(request, &response).ok());
  EXPECT_EQ(response.outcome(), v1::START_OUTCOME_CREATED);
  EXPECT_EQ(response.server().id(), "");
  EXPECT_EQ(List(true).servers_size(), 0);
  ASSERT_TRUE(Start(Echo("web"), &response).ok());
  const std::string id = response.server().id();
  request.mutable_behavior()->mutable_discard();
  request.set_replace(true);
  ASSERT_TRUE(Start(request, &response).ok());
  EXPECT_EQ(response.outcome(), v1::START_OUTCOME_REPLACED);
  EXPECT_THAT(response.difference(), HasSubstr("behavior"));
  v1::ListServersResponse list = List(true);
  ASSERT_EQ(list.servers_size(), 1);
  EXPECT_EQ(list.servers(0).id(), id);
  EXPECT_TRUE(list.servers(0).behavior().has_echo());
}

TEST_F(NamedServerTest, AtMaxServersTheSameNameStillAnswers) {
  v1::StartServerResponse response;
  for (const char* name : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(Start(Echo(name), &response).ok()) << name;
  }
  EXPECT_EQ(Start(Echo("e"), &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(Start(Echo("a"), &response).ok());
  EXPECT_EQ(response.outcome(), v1::START_OUTCOME_UNCHANGED);
  v1::StartServerRequest changed = Echo("a");
  changed.mutable_behavior()->mutable_hold();
  changed.set_replace(true);
  ASSERT_TRUE(Start(changed, &response).ok());
  EXPECT_EQ(response.outcome(), v1::START_OUTCOME_REPLACED);
}

}  // namespace
}  // namespace sockagent
