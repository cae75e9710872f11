// Watch end to end: a real sockagentd, a real gRPC stub, plain POSIX peers.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using Reader = grpc::ClientReader<v1::Event>;

struct Watcher {
  std::unique_ptr<grpc::ClientContext> context =
      std::make_unique<grpc::ClientContext>();
  std::unique_ptr<Reader> reader;
};

Watcher StartWatch(v1::SocketAgent::Stub& stub, v1::WatchRequest request) {
  Watcher w;
  request.set_snapshot(true);  // SNAPSHOT_END: the watch is in place.
  w.reader = stub.Watch(w.context.get(), request);
  v1::Event e;
  while (w.reader->Read(&e) && e.kind() != v1::EVENT_KIND_SNAPSHOT_END) {
  }
  return w;
}

// Reads until `kind`; false if the stream ends first.
bool ReadUntil(Watcher& w, v1::EventKind kind, std::vector<v1::Event>* seen) {
  v1::Event e;
  while (w.reader->Read(&e)) {
    seen->push_back(e);
    if (e.kind() == kind) return true;
  }
  return false;
}

// A hold (or discard) server on 127.0.0.1.
v1::Server StartServer(v1::SocketAgent::Stub& stub, bool discard,
                       v1::Transport transport = v1::TRANSPORT_TCP) {
  return StartLoopbackServer(stub, [&](v1::StartServerRequest& request) {
    request.set_transport(transport);
    if (discard) request.mutable_behavior()->mutable_discard();
  });
}

uint64_t RssKib(pid_t pid) {
  const int64_t bytes = ProcessRssBytes(pid);
  return bytes < 0 ? 0 : static_cast<uint64_t>(bytes) / 1024;
}

TEST(Watch, HoldServerShowsAcceptedDataClosedWithClientAddress) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  v1::Server server = StartServer(*stub, /*discard=*/false);
  v1::WatchRequest request;
  request.set_server_id(server.id());
  request.set_include_data_bytes(4);
  Watcher w = StartWatch(*stub, request);

  Fd client = TcpConnect(FirstAddress(server));
  const uint16_t port = LocalPort(client.get());
  ASSERT_TRUE(WriteAll(client.get(), "hello world"));
  std::vector<v1::Event> seen;
  ASSERT_TRUE(ReadUntil(w, v1::EVENT_KIND_DATA_RECEIVED, &seen));
  client.Reset();
  ASSERT_TRUE(ReadUntil(w, v1::EVENT_KIND_CONNECTION_PEER_CLOSED, &seen));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].kind(), v1::EVENT_KIND_CONNECTION_ACCEPTED);
  EXPECT_EQ(seen[0].connection().remote().ip(), "127.0.0.1");
  EXPECT_EQ(seen[0].connection().remote().port(), port);
  EXPECT_EQ(seen[1].size(), 11u);
  EXPECT_EQ(seen[1].data(), "hell");
  EXPECT_LT(seen[0].seq(), seen[1].seq());

  v1::CloseConnectionRequest close;
  close.set_id(seen[0].connection_id());
  v1::CloseConnectionResponse closed;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub->CloseConnection(context.get(), close, &closed).ok());
  ASSERT_TRUE(ReadUntil(w, v1::EVENT_KIND_CONNECTION_CLOSED, &seen));
  EXPECT_EQ(seen.back().close_reason(), v1::CLOSE_REASON_LOCAL_CLOSE);
  w.context->TryCancel();
  EXPECT_EQ(w.reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST(Watch, ConcurrentWatchersSeeOnlyTheirEvents) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  v1::Server a = StartServer(*stub, /*discard=*/true);
  v1::Server b = StartServer(*stub, /*discard=*/true);
  v1::WatchRequest ra;
  ra.set_server_id(a.id());
  v1::WatchRequest rb;
  rb.set_server_id(b.id());
  rb.add_kinds(v1::EVENT_KIND_CONNECTION_CLOSED);
  Watcher wa = StartWatch(*stub, ra);
  Watcher wb = StartWatch(*stub, rb);
  for (const v1::Server* s : {&a, &b}) {
    Fd c = TcpConnect(FirstAddress(*s));
    ASSERT_TRUE(WriteAll(c.get(), "x"));
  }
  std::vector<v1::Event> seen_a, seen_b;
  ASSERT_TRUE(ReadUntil(wa, v1::EVENT_KIND_CONNECTION_CLOSED, &seen_a));
  ASSERT_TRUE(ReadUntil(wb, v1::EVENT_KIND_CONNECTION_CLOSED, &seen_b));
  for (const auto& e : seen_a) EXPECT_EQ(e.server_id(), a.id());
  ASSERT_EQ(seen_b.size(), 1u);
  EXPECT_EQ(seen_b[0].server_id(), b.id());
  wa.context->TryCancel();
  wb.context->TryCancel();
  wa.reader->Finish();
  wb.reader->Finish();
}

TEST(Watch, UnknownKindIsInvalidArgument) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  v1::WatchRequest request;
  request.add_kinds(static_cast<v1::EventKind>(99));
  auto context = ContextWithDeadline();
  auto reader = stub->Watch(context.get(), request);
  v1::Event e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A watcher that never reads while 400,000 events are produced: the
// agent's memory stays bounded, the traffic that made the events is counted
// in full (the stalled watcher held nothing back), and the watcher, once it
// reads, is told how many events it lost.
TEST(Watch, StalledWatcherKeepsAgentMemoryBounded) {
  // ASan's quarantine keeps freed memory (256 MiB) and would hide what the
  // agent holds: the child runs without it.
  const char* asan = getenv("ASAN_OPTIONS");
  setenv("ASAN_OPTIONS",
         absl::StrCat(asan == nullptr ? "" : asan, ":quarantine_size_mb=0")
             .c_str(),
         1);
  auto agent = AgentProcess::Start({"--watch_queue_events=256"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  v1::Server server = StartServer(*stub, /*discard=*/true, v1::TRANSPORT_UDP);
  Watcher w = StartWatch(*stub, v1::WatchRequest());  // Then never reads.
  const uint64_t rss_before = RssKib((*agent)->pid());

  // One DATA_RECEIVED event per datagram. Bursts small enough for the
  // agent socket's receive buffer, so the kernel drops none: the agent
  // must count every one.
  constexpr int kDatagrams = 400'000;
  constexpr int kBurst = 200;
  Fd peer = UdpBound();
  sockaddr_storage to;
  const socklen_t to_len = ToSockaddr(FirstAddress(server), &to);
  char payload = 'p';
  iovec iov{&payload, 1};
  std::vector<mmsghdr> burst(kBurst);
  for (mmsghdr& m : burst) {
    m.msg_hdr = msghdr{};
    m.msg_hdr.msg_name = &to;
    m.msg_hdr.msg_namelen = to_len;
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
  }
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
  uint64_t rss_peak = 0;
  int rounds = 0;
  for (int sent = 0; sent < kDatagrams; ++rounds) {
    const int n = std::min(kBurst, kDatagrams - sent);
    int done = 0;
    while (done < n) {
      const int r = ::sendmmsg(peer.get(), burst.data() + done, n - done, 0);
      ASSERT_GT(r, 0) << std::strerror(errno);
      done += r;
    }
    sent += n;
    ASSERT_TRUE(WaitFor([&] {
      return received() == static_cast<uint64_t>(sent);
    })) << "sent "
        << sent << ", the agent counted " << received();
    if (rounds % 500 == 0) {
      rss_peak = std::max(rss_peak, RssKib((*agent)->pid()));
    }
  }
  rss_peak = std::max(rss_peak, RssKib((*agent)->pid()));
  // The queue holds 256 events; gRPC's flow-control windows hold a few
  // thousand more. 400,000 events kept would be well over 40 MiB.
  EXPECT_LT(rss_peak, rss_before + 16 * 1024)
      << "before " << rss_before << " KiB, peak " << rss_peak << " KiB";
  RecordProperty("rss_before_kib", static_cast<int>(rss_before));
  RecordProperty("rss_peak_kib", static_cast<int>(rss_peak));

  v1::ListServersRequest list;
  v1::ListServersResponse listed;
  auto list_context = ContextWithDeadline();
  ASSERT_TRUE(stub->ListServers(list_context.get(), list, &listed).ok());
  EXPECT_EQ(listed.servers(0).counters().datagrams_received(),
            static_cast<uint64_t>(kDatagrams));
  EXPECT_EQ(listed.servers(0).counters().bytes_received(),
            static_cast<uint64_t>(kDatagrams));
  EXPECT_EQ(listed.servers(0).counters().datagrams_dropped(), 0u);

  // Now it reads: what was queued, with an EVENTS_LOST marker where events
  // are missing, until every event is accounted for (a watchdog ends the
  // read if they never are).
  absl::Notification accounted;
  std::thread watchdog([&] {
    if (!accounted.WaitForNotificationWithTimeout(absl::Seconds(60))) {
      w.context->TryCancel();
    }
  });
  uint64_t lost = 0;
  uint64_t data_events = 0;
  v1::Event e;
  while (lost + data_events < kDatagrams && w.reader->Read(&e)) {
    if (e.kind() == v1::EVENT_KIND_EVENTS_LOST) lost += e.lost();
    if (e.kind() == v1::EVENT_KIND_DATA_RECEIVED) ++data_events;
  }
  accounted.Notify();
  watchdog.join();
  // Every event is either delivered or counted as lost.
  EXPECT_EQ(lost + data_events, static_cast<uint64_t>(kDatagrams));
  // Delivered: the 256 queued plus what gRPC's flow-control windows held
  // (they grow to a few MiB by BDP probing: ~70,000 small events here);
  // the rest was dropped, not kept.
  EXPECT_GT(lost, static_cast<uint64_t>(kDatagrams) / 2);
  RecordProperty("events_delivered", static_cast<int>(data_events));
  std::vector<v1::Event> seen;
  // The queue has room again: later events flow.
  v1::StopServerRequest stop;
  stop.set_id(server.id());
  v1::StopServerResponse stopped;
  auto stop_context = ContextWithDeadline();
  ASSERT_TRUE(stub->StopServer(stop_context.get(), stop, &stopped).ok());
  ASSERT_TRUE(ReadUntil(w, v1::EVENT_KIND_SERVER_STOPPED, &seen));
  EXPECT_EQ(seen.back().server_id(), server.id());
  RecordProperty("events_lost", static_cast<int>(lost));
  RecordProperty("events_delivered", static_cast<int>(data_events));
  w.context->TryCancel();
  w.reader->Finish();
}

TEST(Watch, CancelAndSigtermEndPromptly) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  Watcher cancelled = StartWatch(*stub, v1::WatchRequest());
  cancelled.context->TryCancel();
  EXPECT_EQ(cancelled.reader->Finish().error_code(),
            grpc::StatusCode::CANCELLED);

  Watcher attached = StartWatch(*stub, v1::WatchRequest());
  const absl::Time start = absl::Now();
  auto status = (*agent)->Stop();
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0) << (*agent)->Stderr();
  // Well within the 5 s grace: EndStreamingCalls ends the live stream, and the
  // test client answers the shutdown promptly (see grpc_client.h).
  EXPECT_LT(took, absl::Seconds(3)) << took << (*agent)->Stderr();
  v1::Event e;
  while (attached.reader->Read(&e)) {
  }
  EXPECT_TRUE(attached.reader->Finish().ok());
}

}  // namespace
TEST(Watch, SockctlWatchPrintsEventLinesAndStopsAtCount) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  CommandResult started = RunSockctl(
      (*agent)->address(),
      {"--json", "server", "start", "--greeting", "hi", "--close-after"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const size_t at = started.out.find("\"port\":");
  ASSERT_NE(at, std::string::npos);
  const uint16_t port =
      static_cast<uint16_t>(std::stoi(started.out.substr(at + 7)));
  auto watch = ChildProcess::Start(
      {SOCKCTL_PATH, "--agent", (*agent)->address(), "watch", "--snapshot",
       "--kind", "accepted,closed", "--count", "4"});
  ASSERT_TRUE(watch.ok()) << watch.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  // The snapshot (the server, then its end) proves the watch is subscribed.
  auto line = (*watch)->ReadLine(deadline);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_NE(line->find("snapshot-server"), std::string::npos) << *line;
  line = (*watch)->ReadLine(deadline);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_NE(line->find("snapshot-end"), std::string::npos) << *line;
  Fd client = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(client.valid());
  const std::string peer =
      "remote=127.0.0.1:" + std::to_string(LocalPort(client.get()));
  EXPECT_EQ(ReadToEof(client.get()), "hi");
  line = (*watch)->ReadLine(deadline);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_NE(line->find("connection-accepted"), std::string::npos) << *line;
  EXPECT_NE(line->find(peer), std::string::npos) << *line;
  line = (*watch)->ReadLine(deadline);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_NE(line->find("connection-closed"), std::string::npos) << *line;
  // --count reached: sockctl exits 0 by itself (Stop only reaps it).
  auto status = (*watch)->Stop(0, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

}  // namespace sockagent::testing
