// Faults injected by the agent (AddFault & co., agent/faults.h) on the
// bytes it sends, measured by plain POSIX peers in this process, never by
// the agent: latency round trips, a bandwidth cap, slice sizes, limit_data,
// reset_peer, timeout, slow_close, removal mid-stream, the buffer bound
// under a long latency, the API's errors and the CLI. Timing bounds are
// generous and one-sided (2-core CI machine under ASan); the tight figures
// are in BENCHMARKS.md.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class FaultInjection : public AgentTestBase {
 protected:
  grpc::Status AddFault(const v1::Fault& fault, v1::Fault* out = nullptr) {
    return testing::AddFault(*stub_, fault, out);
  }

  grpc::Status RemoveFault(const std::string& name) {
    return testing::RemoveFault(*stub_, name);
  }

  v1::Server Echo() {
    return StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
      r.mutable_behavior()->mutable_echo();
    });
  }

  std::vector<v1::Connection> Connections(const std::string& server_id) {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    request.set_include_closed(true);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    EXPECT_TRUE(stub_->ListConnections(context.get(), request, &response).ok());
    return {response.connections().begin(), response.connections().end()};
  }

  static v1::Fault OnServer(const v1::Server& s, const std::string& name) {
    v1::Fault f;
    f.set_name(name);
    f.mutable_target()->set_server_id(s.id());
    return f;
  }
};

Fd ConnectNoDelay(const SocketAddress& at) {
  Fd fd = TcpConnect(at);
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Waits up to `ms` for bytes: true if any arrived (or EOF/error).
bool Readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

TEST_F(FaultInjection, LatencyDelaysEveryRoundTrip) {
  StartAgent();
  const v1::Server server = Echo();
  v1::Fault f = OnServer(server, "lat");
  SetDuration(absl::Milliseconds(20), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(AddFault(f).ok());
  Fd fd = ConnectNoDelay(FirstAddress(server));
  ASSERT_TRUE(fd.valid());
  std::vector<int64_t> rtts;
  for (int i = 0; i < 200; ++i) {
    const std::string msg = Pattern(i * 16, 16);
    const int64_t t0 = NowUs();
    ASSERT_TRUE(WriteAll(fd.get(), msg));
    ASSERT_EQ(ReadExactly(fd.get(), msg.size()), msg);
    rtts.push_back(NowUs() - t0);
  }
  std::sort(rtts.begin(), rtts.end());
  const int64_t p50 = rtts[100];
  const int64_t p99 = rtts[197];
  std::cout << "latency 20ms: p50 " << p50 << " us, p99 " << p99 << " us, max "
            << rtts.back() << " us\n";
  // Never early (the fault's promise); late only by what the machine's
  // load adds. The tight bounds (p50 <= L + 5 ms, p99 <= L + 25 ms)
  // held on a quiet machine (p50 20.6 ms, p99 25.5 ms) but not at load 13
  // on 2 cores (p50 27 ms, p99 48 ms): the upper bounds here are generous,
  // the tight figures go to BENCHMARKS.md.
  EXPECT_GE(rtts.front(), 20000);
  EXPECT_LE(p50, 20000 + 25000);
  EXPECT_LE(p99, 20000 + 100000);
  // The listing names the fault on the connection, and the fault counts it.
  const std::vector<v1::Connection> conns = Connections(server.id());
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_THAT(conns[0].faults(), ::testing::ElementsAre("lat"));
  v1::ListFaultsResponse listed;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(
      stub_->ListFaults(context.get(), v1::ListFaultsRequest(), &listed).ok());
  ASSERT_EQ(listed.faults_size(), 1);
  EXPECT_EQ(listed.faults(0).connections(), 1u);
  EXPECT_EQ(listed.faults(0).toxicity(), 1.0);
  EXPECT_NE(listed.faults(0).seed(), 0u);
}

TEST_F(FaultInjection, BandwidthCapsTheRate) {
  StartAgent();
  const v1::Server server = Echo();
  constexpr uint64_t kRate = 10'000'000;
  v1::Fault f = OnServer(server, "bw");
  f.mutable_bandwidth()->set_rate_bytes_per_second(kRate);
  ASSERT_TRUE(AddFault(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(fd.valid());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    const std::string block = Pattern(0, 65536);
    while (!stop.load()) {
      pollfd p{fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      if (::send(fd.get(), block.data(), block.size(),
                 MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
          errno != EAGAIN) {
        return;
      }
    }
  });
  // Measured from the first byte, over 3 s (5 s in the issue; 3 s holds
  // the same bound here and keeps CI shorter).
  std::vector<char> buf(1 << 20);
  uint64_t got = 0;
  int64_t first_us = 0;
  const absl::Duration window = absl::Seconds(3);
  for (;;) {
    ASSERT_TRUE(Readable(fd.get(), 10000));
    const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    ASSERT_GT(n, 0);
    if (first_us == 0) {
      first_us = NowUs();  // The first chunk starts the clock.
      continue;
    }
    got += n;
    if (NowUs() - first_us >= absl::ToInt64Microseconds(window)) break;
  }
  const double seconds = (NowUs() - first_us) / 1e6;
  const double rate = got / seconds;
  std::cout << "bandwidth 10 MB/s: " << got << " bytes in " << seconds
            << " s = " << rate / 1e6 << " MB/s\n";
  stop.store(true);
  CloseWithReset(fd);
  writer.join();
  EXPECT_GE(rate, kRate * 0.9);
  EXPECT_LE(rate, kRate * 1.1);
}

TEST_F(FaultInjection, SlicerCutsWritesIntoSlices) {
  StartAgent();
  const v1::Server server = Echo();
  v1::Fault f = OnServer(server, "slices");
  f.mutable_slicer()->set_average_size(100);
  f.mutable_slicer()->set_size_variation(20);
  SetDuration(absl::Milliseconds(20), f.mutable_slicer()->mutable_delay());
  ASSERT_TRUE(AddFault(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  const std::string sent = Pattern(0, 1000);
  const int64_t t0 = NowUs();
  ASSERT_TRUE(WriteAll(fd.get(), sent));
  std::string got;
  const std::vector<size_t> reads = ReadSizes(fd.get(), sent.size(), &got);
  const int64_t took = NowUs() - t0;
  EXPECT_EQ(got, sent);
  // At least 8 slices (1000 / 120), 20 ms apart.
  EXPECT_GE(reads.size(), 8u);
  EXPECT_GE(took, 7 * 20000);
  // A slow reader may merge two slices; nearly every read is one slice.
  size_t within = 0;
  for (size_t i = 0; i + 1 < reads.size(); ++i) {
    if (reads[i] >= 80 && reads[i] <= 120) ++within;
  }
  EXPECT_GE(within, (reads.size() - 1) * 8 / 10);
  std::cout << "slicer: " << reads.size() << " reads in " << took << " us\n";
}

TEST_F(FaultInjection, LimitDataClosesAfterExactlyNBytes) {
  StartAgent();
  const v1::Server server = Echo();
  v1::Fault f = OnServer(server, "limit");
  f.mutable_limit_data()->set_bytes(1000);
  ASSERT_TRUE(AddFault(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WriteAll(fd.get(), Pattern(0, 5000)));
  int error = 0;
  const std::string got = ReadToEof(fd.get(), &error);
  EXPECT_EQ(error, 0);  // A FIN, not a reset.
  EXPECT_EQ(got, Pattern(0, 1000));
  ASSERT_TRUE(WaitFor([&] {
    auto conns = Connections(server.id());
    return conns.size() == 1 && conns[0].state() == v1::CONNECTION_STATE_CLOSED;
  }));
  const v1::Connection c = Connections(server.id())[0];
  EXPECT_THAT(c.close_detail(), HasSubstr("limit_data"));
  EXPECT_EQ(c.counters().bytes_sent(), 1000u);
}

TEST_F(FaultInjection, ResetPeerResetsAfterItsTimeout) {
  StartAgent();
  const v1::Server server = Echo();
  constexpr int64_t kTimeoutUs = 300000;
  v1::Fault f = OnServer(server, "reset");
  SetDuration(absl::Microseconds(kTimeoutUs),
              f.mutable_reset_peer()->mutable_timeout());
  ASSERT_TRUE(AddFault(f).ok());
  const int64_t t0 = NowUs();
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(fd.valid());
  int error = 0;
  ReadToEof(fd.get(), &error);
  const int64_t took = NowUs() - t0;
  std::cout << "reset_peer 300ms: ECONNRESET after " << took << " us\n";
  EXPECT_EQ(error, ECONNRESET);
  EXPECT_GE(took, kTimeoutUs);
  EXPECT_LE(took, kTimeoutUs + 100000);
}

TEST_F(FaultInjection, TimeoutDeliversNothingAndClosesWhenSet) {
  StartAgent();
  const v1::Server server = Echo();
  v1::Fault hole = OnServer(server, "hole");
  hole.mutable_timeout();  // 0: never closes.
  ASSERT_TRUE(AddFault(hole).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WriteAll(fd.get(), "into the hole"));
  ASSERT_TRUE(WaitFor([&] {
    auto conns = Connections(server.id());
    return conns.size() == 1 && conns[0].counters().bytes_received() == 13;
  }));
  EXPECT_FALSE(Readable(fd.get(), 300));  // Echoed nothing.
  // Removed: what it swallowed stays lost (as toxiproxy), new bytes flow.
  ASSERT_TRUE(RemoveFault("hole").ok());
  ASSERT_TRUE(WriteAll(fd.get(), "after"));
  EXPECT_EQ(ReadExactly(fd.get(), 5), "after");

  v1::Fault timed = OnServer(server, "timed");
  SetDuration(absl::Milliseconds(200),
              timed.mutable_timeout()->mutable_timeout());
  ASSERT_TRUE(AddFault(timed).ok());
  const int64_t t0 = NowUs();
  Fd second = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WriteAll(second.get(), "lost"));
  int error = 0;
  EXPECT_EQ(ReadToEof(second.get(), &error), "");
  const int64_t took = NowUs() - t0;
  EXPECT_GE(took, 200000);
  std::cout << "timeout 200ms: closed after " << took << " us (error " << error
            << ")\n";
}

TEST_F(FaultInjection, SlowCloseDelaysTheFin) {
  StartAgent();
  const v1::Server server =
      StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
        r.mutable_behavior()->mutable_greeting()->set_data("hello\n");
        r.mutable_behavior()->mutable_greeting()->set_close_after(true);
      });
  v1::Fault f = OnServer(server, "slow");
  SetDuration(absl::Milliseconds(300), f.mutable_slow_close()->mutable_delay());
  ASSERT_TRUE(AddFault(f).ok());
  const int64_t t0 = NowUs();
  Fd fd = TcpConnect(FirstAddress(server));
  EXPECT_EQ(ReadExactly(fd.get(), 6), "hello\n");
  const int64_t greeted = NowUs() - t0;
  int error = 0;
  EXPECT_EQ(ReadToEof(fd.get(), &error), "");
  const int64_t fin = NowUs() - t0;
  std::cout << "slow_close 300ms: greeting after " << greeted
            << " us, FIN after " << fin << " us\n";
  EXPECT_EQ(error, 0);
  EXPECT_LT(greeted, 300000);
  EXPECT_GE(fin, 300000);
}

TEST_F(FaultInjection, RemovingLatencyMidStreamDeliversEveryByteInOrder) {
  StartAgent();
  const v1::Server server = Echo();
  v1::Fault f = OnServer(server, "long");
  SetDuration(absl::Minutes(10), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(AddFault(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  const std::string sent = Pattern(0, 200000);
  ASSERT_TRUE(WriteAll(fd.get(), sent));
  ASSERT_TRUE(WaitFor([&] {
    auto conns = Connections(server.id());
    return conns.size() == 1 &&
           conns[0].counters().bytes_received() == sent.size();
  }));
  EXPECT_FALSE(Readable(fd.get(), 100));
  ASSERT_TRUE(RemoveFault("long").ok());
  EXPECT_EQ(ReadExactly(fd.get(), sent.size()), sent);
  EXPECT_TRUE(Connections(server.id())[0].faults().empty());
}

// A 10-minute latency on a fast sender: the delayed bytes stay in the
// connection's send buffer, so the echo stops reading at its bound instead
// of growing memory.
TEST_F(FaultInjection, LongLatencyPausesReadingAtTheSendBuffer) {
  constexpr uint64_t kSendBuffer = 1 << 20;
  StartAgent({absl::StrCat("--send-buffer-bytes=", kSendBuffer)});
  const v1::Server server = Echo();
  v1::Fault f = OnServer(server, "long");
  SetDuration(absl::Minutes(10), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(AddFault(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  // Write without blocking until the kernel and the agent stop taking.
  const uint64_t written = WriteUntilStopped(fd.get(), 64u << 20);
  const v1::Connection c = Connections(server.id())[0];
  std::cout << "latency 10m: peer wrote " << written << ", agent read "
            << c.counters().bytes_received() << ", queued "
            << c.counters().send_buffered() << "\n";
  EXPECT_LT(written, 64u << 20);  // The sender was stopped.
  EXPECT_LE(c.counters().send_buffered_peak(), kSendBuffer + (256 << 10));
  EXPECT_EQ(c.counters().bytes_sent(), 0u);
  ASSERT_TRUE(RemoveFault("long").ok());
}

TEST_F(FaultInjection, WatchShowsFaultsAddedAppliedAndRemoved) {
  StartAgent();
  const v1::Server server = Echo();
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WaitFor([&] { return Connections(server.id()).size() == 1; }));
  const std::string conn_id = Connections(server.id())[0].id();
  grpc::ClientContext watch_context;
  watch_context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(30));
  v1::WatchRequest request;
  request.add_kinds(v1::EVENT_KIND_FAULT_ADDED);
  request.add_kinds(v1::EVENT_KIND_FAULT_APPLIED);
  request.add_kinds(v1::EVENT_KIND_FAULT_REMOVED);
  request.set_snapshot(true);
  auto reader = stub_->Watch(&watch_context, request);
  v1::Event event;
  // Once the snapshot ended, the watch is live.
  do {
    ASSERT_TRUE(reader->Read(&event));
  } while (event.kind() != v1::EVENT_KIND_SNAPSHOT_END);
  v1::Fault f = OnServer(server, "watched");
  f.mutable_limit_data()->set_bytes(1 << 20);
  ASSERT_TRUE(AddFault(f).ok());
  ASSERT_TRUE(RemoveFault("watched").ok());
  std::vector<std::string> seen;
  while (seen.size() < 3 && reader->Read(&event)) {
    seen.push_back(absl::StrCat(v1::EventKind_Name(event.kind()), " ",
                                event.connection_id(), " ", event.message()));
  }
  watch_context.TryCancel();
  (void)reader->Finish();
  EXPECT_THAT(
      seen, ::testing::ElementsAre(
                "EVENT_KIND_FAULT_ADDED  watched",
                absl::StrCat("EVENT_KIND_FAULT_APPLIED ", conn_id, " watched"),
                "EVENT_KIND_FAULT_REMOVED  watched"));
}

TEST_F(FaultInjection, BadRequestsAreRefusedNamingTheField) {
  StartAgent();
  const v1::Server server = Echo();
  v1::Fault f = OnServer(server, "ok");
  SetDuration(absl::Milliseconds(5), f.mutable_latency()->mutable_latency());
  SetDuration(absl::Hours(2), f.mutable_latency()->mutable_jitter());
  grpc::Status s = AddFault(f);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "fault.latency.jitter must be <= 1h");

  f.mutable_latency()->clear_jitter();
  ASSERT_TRUE(AddFault(f).ok());
  s = AddFault(f);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);

  v1::Fault missing = f;
  missing.set_name("missing");
  missing.mutable_target()->set_server_id("srv-999");
  s = AddFault(missing);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  missing.mutable_target()->set_server_id("bogus");
  EXPECT_EQ(AddFault(missing).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::Fault untyped;
  untyped.set_name("untyped");
  untyped.mutable_target()->set_server_id(server.id());
  s = AddFault(untyped);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("a type is required"));

  EXPECT_EQ(RemoveFault("nope").error_code(), grpc::StatusCode::NOT_FOUND);
  v1::UpdateFaultRequest update;
  update.mutable_fault()->set_name("nope");
  update.mutable_fault()->mutable_bandwidth()->set_rate_bytes_per_second(1);
  v1::UpdateFaultResponse updated;
  auto context = ContextWithDeadline();
  EXPECT_EQ(stub_->UpdateFault(context.get(), update, &updated).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // At most 256 faults per agent.
  for (int i = 1; i < 256; ++i) {
    v1::Fault more = f;
    more.set_name(absl::StrCat("f", i));
    ASSERT_TRUE(AddFault(more).ok()) << i;
  }
  v1::Fault one_more = f;
  one_more.set_name("one-more");
  EXPECT_EQ(AddFault(one_more).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Removing all at once (toxiproxy's reset).
  v1::RemoveFaultRequest all;
  all.set_all(true);
  v1::RemoveFaultResponse removed;
  auto context2 = ContextWithDeadline();
  ASSERT_TRUE(stub_->RemoveFault(context2.get(), all, &removed).ok());
  EXPECT_EQ(removed.names_size(), 256);
}

TEST_F(FaultInjection, CliAddsListsAndRemoves) {
  StartAgent();
  const v1::Server server = Echo();
  CommandResult r = RunSockctl(
      agent_->address(), {"fault", "add", server.id(), "latency", "-p",
                          "latency=20ms", "-p", "jitter=1ms", "--name", "cli"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cli"));
  r = RunSockctl(agent_->address(), {"fault", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("latency=20ms"));
  r = RunSockctl(agent_->address(), {"fault", "add", server.id(), "latency",
                                     "-p", "jitter=2h", "--name", "bad"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("fault.latency.jitter must be <= 1h"));
  r = RunSockctl(agent_->address(), {"fault", "remove", "cli"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunSockctl(agent_->address(), {"fault", "list", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("cli")));
}

}  // namespace
}  // namespace sockagent::testing
