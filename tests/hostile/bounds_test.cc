// Unbounded request content (issue 12, section 4): labels beyond their
// bounds are refused naming the limit, listings fit the message size
// whatever the objects carry, bulk Stop/Close answers stay bounded, and
// stalled watchers cannot hold unbounded memory.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

using LabelMap = google::protobuf::Map<std::string, std::string>;

// `n` labels, keys "kNNN" padded with 'k' to `key_bytes`, values of
// `value_bytes`.
LabelMap MakeLabels(int n, size_t key_bytes = 8, size_t value_bytes = 8) {
  LabelMap labels;
  for (int i = 0; i < n; ++i) {
    std::string key = absl::StrCat("k", 1000 + i);
    key.resize(std::max(key_bytes, key.size()), 'k');
    labels[key] = std::string(value_bytes, 'v');
  }
  return labels;
}

class LabelLimits : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }

  grpc::Status StartWith(const LabelMap& labels) {
    v1::StartServerRequest request;
    request.mutable_bind()->set_host("127.0.0.1");
    *request.mutable_labels() = labels;
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->StartServer(context.get(), request, &response);
    if (s.ok()) {
      EXPECT_EQ(response.server().labels_size(), labels.size());
      v1::StopServerRequest stop;
      stop.set_id(response.server().id());
      v1::StopServerResponse stopped;
      auto c = ContextWithDeadline();
      EXPECT_TRUE(stub_->StopServer(c.get(), stop, &stopped).ok());
    }
    return s;
  }

  // At the limit: OK. One over: INVALID_ARGUMENT naming the limit.
  void ExpectLimit(const LabelMap& at, const LabelMap& over,
                   const std::string& names) {
    grpc::Status ok = StartWith(at);
    EXPECT_TRUE(ok.ok()) << names << ": " << ok.error_message();
    grpc::Status refused = StartWith(over);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << names;
    EXPECT_THAT(refused.error_message(), HasSubstr(names));
  }
};

TEST_F(LabelLimits, CountPerObject) {
  ExpectLimit(MakeLabels(64), MakeLabels(65), "at most 64 labels per object");
}

TEST_F(LabelLimits, KeyBytes) {
  ExpectLimit(MakeLabels(1, 63), MakeLabels(1, 64), "at most 63 bytes");
}

TEST_F(LabelLimits, PrefixedKeyBytes) {
  // 189-byte prefix + '/' + 63-byte name = 253 bytes.
  const std::string name(63, 'n');
  LabelMap at, over;
  at[std::string(189, 'p') + "/" + name] = "v";
  over[std::string(190, 'p') + "/" + name] = "v";
  ExpectLimit(at, over, "at most 253 bytes with a prefix/");
  // The name after the prefix keeps its own bound.
  LabelMap long_name;
  long_name["example.com/" + std::string(64, 'n')] = "v";
  grpc::Status s = StartWith(long_name);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("1 to 63 bytes"));
}

TEST_F(LabelLimits, ValueBytes) {
  ExpectLimit(MakeLabels(1, 8, 256), MakeLabels(1, 8, 257),
              "at most 256 bytes");
}

TEST_F(LabelLimits, TotalBytesPerObject) {
  // 64 labels of 63 + 193 bytes: exactly 16384 bytes.
  LabelMap at = MakeLabels(64, 63, 193);
  LabelMap over = at;
  over.begin()->second.push_back('v');
  ExpectLimit(at, over, "at most 16384 bytes of labels per object");
}

TEST_F(LabelLimits, EmptyKeyRefused) {
  LabelMap labels;
  labels[""] = "v";
  grpc::Status s = StartWith(labels);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("empty"));
}

TEST_F(LabelLimits, OpenClientAndSelectorsToo) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  ASSERT_TRUE(listener.valid());
  {
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(port);
    *request.mutable_labels() = MakeLabels(65);
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->OpenClient(context.get(), request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("at most 64 labels per object"));
  }
  const LabelMap too_many = MakeLabels(65);
  auto expect_refused = [](const grpc::Status& s, const char* rpc) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << rpc;
    EXPECT_THAT(s.error_message(), HasSubstr("label_selector")) << rpc;
    EXPECT_THAT(s.error_message(), HasSubstr("at most 64 labels")) << rpc;
  };
  // Each unary RPC that takes a selector, called with `too_many`.
  auto refused_selector = [&]<typename Request, typename Response>(
                              grpc::Status (v1::SocketAgent::Stub::*rpc)(
                                  grpc::ClientContext*, const Request&,
                                  Response*),
                              const char* name) {
    Request request;
    *request.mutable_label_selector() = too_many;
    Response response;
    auto context = ContextWithDeadline();
    expect_refused(((*stub_).*rpc)(context.get(), request, &response), name);
  };
  refused_selector(&v1::SocketAgent::Stub::ListServers, "ListServers");
  refused_selector(&v1::SocketAgent::Stub::ListConnections, "ListConnections");
  refused_selector(&v1::SocketAgent::Stub::StopServer, "StopServer");
  refused_selector(&v1::SocketAgent::Stub::CloseConnection, "CloseConnection");
  {
    v1::WatchRequest request;
    *request.mutable_label_selector() = too_many;
    auto context = ContextWithDeadline();
    auto reader = stub_->Watch(context.get(), request);
    v1::Event event;
    EXPECT_FALSE(reader->Read(&event));
    expect_refused(reader->Finish(), "Watch");
  }
}

// Objects carrying the most labels allowed: every answer still fits the
// agent's message size (64 KiB here), and paging reaches every object.
class FullLabels : public AgentTestBase {
 protected:
  static constexpr int kServers = 20;
  static constexpr int kConnections = 12;

  void SetUp() override {
    StartAgent({"--max_message_bytes=65536", "--max_send_bytes=32768"});
    if (HasFatalFailure()) return;
    labels_ = MakeLabels(64, 63, 193);  // 16 KiB per object.
    labels_.erase(labels_.begin());
    labels_["group"] = "full";
  }

  LabelMap labels_;
};

TEST_F(FullLabels, ListServersPagesWithinMessageSize) {
  std::vector<std::string> ids;
  for (int i = 0; i < kServers; ++i) {
    v1::Server s = StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
      *r.mutable_labels() = labels_;
    });
    ASSERT_FALSE(s.id().empty());
    ids.push_back(s.id());
  }
  std::vector<std::string> seen;
  v1::ListServersRequest request;
  request.set_page_size(1000);
  int pages = 0;
  for (;;) {
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListServers(context.get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_LE(response.ByteSizeLong(), 65536u);
    ++pages;
    for (const auto& server : response.servers()) seen.push_back(server.id());
    if (response.next_page_token().empty()) break;
    ASSERT_GT(response.servers_size(), 0);
    request.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(seen, ids);
  EXPECT_GT(pages, 1);

  // sockctl server list follows the pages too.
  CommandResult listed = RunSockctl(agent_->address(), {"server", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  for (const std::string& id : ids) {
    EXPECT_THAT(listed.out, HasSubstr(id + " "));
  }
}

TEST_F(FullLabels, ListConnectionsPagesWithinMessageSize) {
  uint16_t port = 0;
  Fd listener = TcpListen(64, &port);
  ASSERT_TRUE(listener.valid());
  std::vector<std::string> ids;
  std::vector<Fd> peers;
  for (int i = 0; i < kConnections; ++i) {
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(port);
    *request.mutable_labels() = labels_;
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->OpenClient(context.get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ids.push_back(response.connection().id());
    peers.push_back(Accept(listener.get()));
  }
  std::vector<std::string> seen;
  v1::ListConnectionsRequest request;
  request.set_page_size(1000);
  for (;;) {
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListConnections(context.get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    for (const auto& c : response.connections()) seen.push_back(c.id());
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(seen, ids);

  CommandResult listed = RunSockctl(agent_->address(), {"conn", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  for (const std::string& id : ids) {
    EXPECT_THAT(listed.out, HasSubstr(id + " "));
  }

  // Closing all of them by selector: one bounded answer, within the size.
  v1::CloseConnectionRequest close;
  (*close.mutable_label_selector())["group"] = "full";
  v1::CloseConnectionResponse closed;
  auto context = ContextWithDeadline();
  grpc::Status s = stub_->CloseConnection(context.get(), close, &closed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(closed.connections_closed(), static_cast<uint64_t>(kConnections));
  EXPECT_EQ(closed.connection_ids_size(), kConnections);
  EXPECT_LT(closed.connections_size(), kConnections);  // 64 KiB holds fewer.
  EXPECT_GE(closed.connections_size(), 1);
  EXPECT_TRUE(closed.truncated());
}

// Many objects closed or stopped by one selector: a count, at most 100 ids
// and objects, a truncated flag, and a prompt answer.
class BulkAnswers : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }
};

TEST_F(BulkAnswers, CloseBySelectorIsCountedAndBounded) {
  constexpr int kConns = 300;
  v1::Server hold = StartLoopbackServer(*stub_);
  ASSERT_FALSE(hold.id().empty());
  const SocketAddress to = FirstAddress(hold);
  std::vector<std::string> ids;
  for (int i = 0; i < kConns; ++i) {
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host(to.ip);
    request.mutable_remote()->set_port(to.port);
    (*request.mutable_labels())["bulk"] = "yes";
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->OpenClient(context.get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ids.push_back(response.connection().id());
  }
  v1::CloseConnectionRequest close;
  (*close.mutable_label_selector())["bulk"] = "yes";
  v1::CloseConnectionResponse closed;
  auto context = ContextWithDeadline();
  const absl::Time start = absl::Now();
  grpc::Status s = stub_->CloseConnection(context.get(), close, &closed);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_LT(took, absl::Seconds(10));
  EXPECT_EQ(closed.connections_closed(), static_cast<uint64_t>(kConns));
  ASSERT_EQ(closed.connection_ids_size(), 100);
  EXPECT_EQ(closed.connections_size(), 100);
  EXPECT_TRUE(closed.truncated());
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(closed.connection_ids(i), ids[i]);
    EXPECT_EQ(closed.connections(i).id(), ids[i]);
    EXPECT_EQ(closed.connections(i).state(), v1::CONNECTION_STATE_CLOSED);
  }

  // By id: the one connection, not truncated.
  v1::CloseConnectionRequest one;
  one.set_id(ids.back());
  v1::CloseConnectionResponse answer;
  auto c2 = ContextWithDeadline();
  ASSERT_TRUE(stub_->CloseConnection(c2.get(), one, &answer).ok());
  EXPECT_EQ(answer.connections_closed(), 1u);
  EXPECT_EQ(answer.connections_size(), 1);
  EXPECT_FALSE(answer.truncated());

  // sockctl says how many there were when the list is cut.
  for (int i = 0; i < 150; ++i) {
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host(to.ip);
    request.mutable_remote()->set_port(to.port);
    (*request.mutable_labels())["again"] = "yes";
    v1::OpenClientResponse response;
    auto c = ContextWithDeadline();
    ASSERT_TRUE(stub_->OpenClient(c.get(), request, &response).ok());
  }
  CommandResult cli =
      RunSockctl(agent_->address(), {"close", "--label", "again=yes"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.err,
              HasSubstr("connections closed: 150 (listed: the first 100)"));
}

TEST_F(BulkAnswers, StopBySelectorIsCountedAndBounded) {
  constexpr int kServers = 130;
  for (int i = 0; i < kServers; ++i) {
    v1::Server s = StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
      (*r.mutable_labels())["bulk"] = "yes";
    });
    ASSERT_FALSE(s.id().empty());
  }
  v1::StopServerRequest stop;
  (*stop.mutable_label_selector())["bulk"] = "yes";
  v1::StopServerResponse stopped;
  auto context = ContextWithDeadline();
  grpc::Status s = stub_->StopServer(context.get(), stop, &stopped);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(stopped.servers_stopped(), static_cast<uint64_t>(kServers));
  EXPECT_EQ(stopped.server_ids_size(), 100);
  EXPECT_EQ(stopped.servers_size(), 100);
  EXPECT_TRUE(stopped.truncated());
  for (const auto& server : stopped.servers()) {
    EXPECT_EQ(server.state(), v1::SERVER_STATE_STOPPED);
  }
}

// 63 watchers that never read, each asking for the most data bytes per
// event: together they hold at most --max_watch_bytes (32 MiB) of events
// (without the bound: 63 x 1024 events x 4 KiB; measured 340 MiB), and once
// cancelled the memory goes back to the kernel. Measured on a RelWithDebInfo
// agent (ASan's RSS says nothing about malloc_trim).
TEST(WatchMemory, StalledWatchersAreBoundedAndGiveMemoryBack) {
  const std::string release = ReleaseAgentPath();
  if (release.empty()) {
    if (ReleaseAgentRequired()) FAIL() << "SOCKAGENTD_RELEASE is not set";
    GTEST_SKIP() << "SOCKAGENTD_RELEASE not set (scripts/test.sh sets it)";
  }
  auto agent = AgentProcess::Start({}, "", release);
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  v1::Server server = StartLoopbackServer(*stub, [](v1::StartServerRequest& r) {
    r.set_transport(v1::TRANSPORT_UDP);
    r.mutable_behavior()->mutable_discard();
  });
  ASSERT_FALSE(server.id().empty());
  const uint64_t rss_before = ProcessRssBytes((*agent)->pid());

  constexpr int kWatchers = 63;
  struct Stalled {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader;
  };
  std::vector<Stalled> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    // Each on its own channel, so one stalled stream's flow control does
    // not hold the others'.
    auto own = grpc::CreateCustomChannel(
        (*agent)->address(), grpc::InsecureChannelCredentials(), [i] {
          grpc::ChannelArguments args;
          args.SetInt("sockagent.test.watcher", i);
          return args;
        }());
    auto watch_stub = v1::SocketAgent::NewStub(own);
    Stalled w;
    w.context = std::make_unique<grpc::ClientContext>();
    v1::WatchRequest request;
    request.set_include_data_bytes(4096);
    request.set_snapshot(true);
    w.reader = watch_stub->Watch(w.context.get(), request);
    v1::Event first;  // The subscription is live once the snapshot came.
    ASSERT_TRUE(w.reader->Read(&first));
    watchers.push_back(std::move(w));
  }

  // One DATA_RECEIVED event (4 KiB of data each) per datagram.
  Fd peer = UdpBound();
  const SocketAddress to = FirstAddress(server);
  const std::string payload(4096, 'd');
  auto received = [&]() -> uint64_t {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    if (!stub->ListServers(context.get(), request, &response).ok() ||
        response.servers_size() != 1) {
      return 0;
    }
    return response.servers(0).counters().datagrams_received();
  };
  uint64_t sent = 0;
  uint64_t rss_peak = 0;
  while (received() < 2000 && sent < 20000) {
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(SendTo(peer.get(), payload, to));
      ++sent;
    }
    // Let the agent take each burst before the next (no kernel drops
    // needed for the measurement, but fewer of them).
    WaitFor([&] { return received() + 50 >= sent; }, absl::Seconds(5));
    rss_peak = std::max<uint64_t>(rss_peak, ProcessRssBytes((*agent)->pid()));
  }
  ASSERT_GE(received(), 2000u);
  rss_peak = std::max<uint64_t>(rss_peak, ProcessRssBytes((*agent)->pid()));
  RecordProperty("rss_before_kib", static_cast<int>(rss_before / 1024));
  RecordProperty("rss_peak_kib", static_cast<int>(rss_peak / 1024));
  std::cout << "watchers: rss before " << rss_before / 1024 << " KiB, peak "
            << rss_peak / 1024 << " KiB\n";
  // 32 MiB of queued events, plus gRPC's flow-control windows and what
  // the allocator keeps of freed events (its trim threshold is 64 MiB,
  // malloc_tuning.h); without the bound this was 340 MiB here.
  EXPECT_LT(rss_peak, rss_before + (160u << 20));

  for (auto& w : watchers) w.context->TryCancel();
  for (auto& w : watchers) w.reader->Finish();
  watchers.clear();
  uint64_t rss_after = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        rss_after = ProcessRssBytes((*agent)->pid());
        return rss_after < rss_before + (48u << 20);
      },
      absl::Seconds(20)))
      << "rss before " << rss_before / 1024 << " KiB, after cancel "
      << rss_after / 1024 << " KiB";
  std::cout << "watchers: rss after cancel " << rss_after / 1024 << " KiB\n";
}

}  // namespace
}  // namespace sockagent::testing
