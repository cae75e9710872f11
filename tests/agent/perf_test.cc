// Perf (agent/perf.h behind Engine::Perf) on a real engine against plain
// POSIX peers on loopback: a TCP receiver that counts bytes, a UDP
// receiver that checks the rate and every header, and a POSIX sender of
// hand-made datagrams (gaps, reordering, two runs) for the discard
// server's receive-side accounting (agent/perf_wire.h).
#include "agent/perf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "agent/perf_wire.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A port nobody listens on: bound and closed again.
uint16_t ClosedPort(int type) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(Ip("127.0.0.1", 0), &ss);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  return LocalPort(fd.get());
}

// Accepts connections and reads each until EOF, counting bytes; closes each
// connection at its EOF (as a discard server does). One thread, poll(2).
class TcpSink {
 public:
  TcpSink() : listen_(TcpListen(16, &port_)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~TcpSink() {
    stop_.store(true);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  uint64_t bytes() const { return bytes_.load(); }
  size_t finished() const { return finished_.load(); }

 private:
  void Loop() {
    std::vector<Fd> conns;
    std::vector<char> buf(256 * 1024);
    while (!stop_.load()) {
      std::vector<pollfd> fds{{listen_.get(), POLLIN, 0}};
      for (const Fd& c : conns) fds.push_back({c.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        const int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) conns.emplace_back(fd);
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0 || !conns[i - 1].valid()) continue;
        const ssize_t n = ::recv(fds[i].fd, buf.data(), buf.size(), 0);
        if (n > 0) {
          bytes_ += static_cast<uint64_t>(n);
        } else {
          conns[i - 1].Reset();
          ++finished_;
        }
      }
      std::erase_if(conns, [](const Fd& f) { return !f.valid(); });
    }
  }

  uint16_t port_ = 0;
  Fd listen_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<size_t> finished_{0};
  std::thread thread_;
};

struct Datagram {
  std::string data;
  absl::Time at;
};

// A UDP socket on 127.0.0.1 keeping every datagram it receives.
class UdpSink {
 public:
  UdpSink() : fd_(UdpBound()) {
    int size = 8 << 20;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    port_ = LocalPort(fd_.get());
    thread_ = std::thread([this] { Loop(); });
  }
  ~UdpSink() {
    stop_.store(true);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::vector<Datagram> Take() {
    absl::MutexLock lock(&mu_);
    return got_;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return got_.size();
  }

 private:
  void Loop() {
    std::vector<char> buf(70000);
    while (!stop_.load()) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
      if (n < 0) continue;
      absl::MutexLock lock(&mu_);
      got_.push_back({std::string(buf.data(), n), absl::Now()});
    }
  }

  Fd fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<Datagram> got_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

PerfSpec To(uint16_t port, Transport transport = Transport::kTcp) {
  PerfSpec spec;
  spec.transport = transport;
  spec.target.host = "127.0.0.1";
  spec.target.port = absl::StrCat(port);
  return spec;
}

class PerfTest : public EngineTest {
 protected:
  absl::StatusOr<PerfReport> Run(PerfSpec spec) {
    absl::Notification done;
    std::optional<absl::StatusOr<PerfReport>> result;
    engine_->Perf(std::move(spec), [&](absl::StatusOr<PerfReport> r) {
      result = std::move(r);
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(90)));
    return result.value_or(absl::InternalError("no answer"));
  }
};

TEST(PerfWire, HeaderRoundTripsAndOtherBytesAreNotAHeader) {
  char buf[64] = {};
  WritePerfHeader({.run_id = 0x0102030405060708,
                   .sequence = 42,
                   .sent_ns = 1700000000123456789},
                  buf);
  EXPECT_EQ(std::string(buf, 5), std::string("SAPF\x01", 5));
  std::optional<PerfHeader> h = ParsePerfHeader(buf, sizeof buf);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->run_id, 0x0102030405060708u);
  EXPECT_EQ(h->sequence, 42u);
  EXPECT_EQ(h->sent_ns, 1700000000123456789);
  EXPECT_FALSE(ParsePerfHeader(buf, kPerfHeaderBytes - 1).has_value());
  buf[4] = 2;  // Another version.
  EXPECT_FALSE(ParsePerfHeader(buf, sizeof buf).has_value());
  EXPECT_FALSE(
      ParsePerfHeader("hello, this is not a header at all!", 35).has_value());
}

TEST(PerfWire, CounterCountsGapsLateArrivalsAndRfc3550Jitter) {
  PerfReceiveCounter counter;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  // Transit times (arrival - send) in ms: 10, 12, 11, 15, 15, 10.
  struct Arrival {
    uint64_t seq;
    int transit_ms;
  } arrivals[] = {{0, 10}, {1, 12}, {2, 11}, {5, 15}, {4, 15}, {7, 10}};
  double jitter = 0;
  int previous = 0;
  for (size_t i = 0; i < std::size(arrivals); ++i) {
    const absl::Time sent = t0 + absl::Milliseconds(100 * i);
    counter.Account({.run_id = 9,
                     .sequence = arrivals[i].seq,
                     .sent_ns = absl::ToUnixNanos(sent)},
                    sent + absl::Milliseconds(arrivals[i].transit_ms), 100);
    if (i > 0) {
      jitter += (std::abs(arrivals[i].transit_ms - previous) - jitter) / 16;
    }
    previous = arrivals[i].transit_ms;
  }
  const PerfReceiveStats& s = counter.stats();
  EXPECT_EQ(s.run_id, 9u);
  EXPECT_EQ(s.datagrams, 6u);
  EXPECT_EQ(s.bytes, 600u);
  EXPECT_EQ(s.highest_sequence, 7u);
  EXPECT_EQ(s.lost, 2u);          // 3 and 6 never came; 4 came late.
  EXPECT_EQ(s.out_of_order, 1u);  // 4 after 5.
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s.jitter), jitter, 1e-3);
  EXPECT_EQ(s.first_at, t0 + absl::Milliseconds(10));

  // Another run id from the same sender starts afresh.
  counter.Account({.run_id = 10, .sequence = 0, .sent_ns = 0},
                  absl::FromUnixSeconds(2000), 50);
  EXPECT_EQ(counter.stats().run_id, 10u);
  EXPECT_EQ(counter.stats().datagrams, 1u);
  EXPECT_EQ(counter.stats().lost, 0u);
  EXPECT_EQ(counter.stats().jitter, absl::ZeroDuration());
}

TEST_F(PerfTest, TcpStreamsReachAPosixReceiverByteForByte) {
  TcpSink sink;
  PerfSpec spec = To(sink.port());
  spec.parallel = 3;
  spec.duration = absl::Milliseconds(300);
  absl::StatusOr<PerfReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->streams.size(), 3u);
  uint64_t sum = 0;
  for (const PerfStreamReport& s : report->streams) {
    EXPECT_EQ(s.error, "");
    EXPECT_GT(s.bytes, 0u);
    // The receiver closed after our FIN: everything written arrived.
    EXPECT_TRUE(s.drained);
    EXPECT_TRUE(s.tcp.valid);
    EXPECT_GT(s.tcp.snd_mss, 0u);
    EXPECT_GT(s.tcp.snd_cwnd, 0u);
    EXPECT_GT(s.tcp.rtt, absl::ZeroDuration());
    EXPECT_EQ(s.remote.port, sink.port());
    EXPECT_NE(s.local.port, 0);
    EXPECT_GE(s.duration, absl::Milliseconds(300));
    sum += s.bytes;
  }
  EXPECT_EQ(report->bytes, sum);
  EXPECT_TRUE(WaitFor([&] { return sink.finished() == 3; }));
  EXPECT_EQ(sink.bytes(), sum);
  // Generous: stops at the duration, not long after (a loaded machine).
  EXPECT_LT(report->duration, absl::Seconds(5));
}

TEST_F(PerfTest, TcpStopsAtTheByteCountAcrossStreams) {
  TcpSink sink;
  PerfSpec spec = To(sink.port());
  spec.parallel = 3;
  spec.bytes = (1 << 20) + 5;
  absl::StatusOr<PerfReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->bytes, spec.bytes);
  EXPECT_TRUE(WaitFor([&] { return sink.finished() == 3; }));
  EXPECT_EQ(sink.bytes(), spec.bytes);
}

TEST_F(PerfTest, UdpSendsNumberedTimestampedDatagramsAtTheRate) {
  UdpSink sink;
  PerfSpec spec = To(sink.port(), Transport::kUdp);
  spec.udp_rate_bps = 2'000'000;
  spec.udp_datagram_bytes = 1000;
  spec.duration = absl::Milliseconds(500);
  spec.run_id = 77;
  absl::StatusOr<PerfReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->streams.size(), 1u);
  EXPECT_EQ(report->run_id, 77u);
  const uint64_t sent = report->datagrams;
  EXPECT_EQ(report->bytes, sent * 1000);
  // 2 Mbit/s of 1000-byte datagrams is 250/s: 125 in 0.5 s, plus the
  // first one at once. Never faster than the rate over the time it sent
  // (which a loaded machine stretches: the end timer fires late); slower
  // only on a machine too loaded to wake the pacing timer.
  const double sent_for = absl::ToDoubleSeconds(report->streams[0].duration);
  EXPECT_GE(sent_for, 0.5);
  EXPECT_LE(sent, static_cast<uint64_t>(sent_for * 250) + 2) << sent_for;
  EXPECT_GE(sent, 60u);
  ASSERT_TRUE(WaitFor([&] { return sink.count() == sent; }));
  std::vector<Datagram> got = sink.Take();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].data.size(), 1000u);
    std::optional<PerfHeader> h =
        ParsePerfHeader(got[i].data.data(), got[i].data.size());
    ASSERT_TRUE(h.has_value()) << i;
    EXPECT_EQ(h->run_id, 77u);
    EXPECT_EQ(h->sequence, i);  // Loopback keeps the order.
  }
  // Paced over the duration, not sent in one burst.
  const PerfHeader first = *ParsePerfHeader(got.front().data.data(), 1000);
  const PerfHeader last = *ParsePerfHeader(got.back().data.data(), 1000);
  EXPECT_GE(last.sent_ns - first.sent_ns, 400'000'000);
}

TEST_F(PerfTest, DiscardServerCountsLossOrderAndJitterPerSender) {
  absl::StatusOr<ServerInfo> server = sync_->StartServer(
      LoopbackServer(BehaviorKind::kDiscard, Transport::kUdp));
  ASSERT_TRUE(server.ok()) << server.status();
  sockaddr_storage to;
  const socklen_t to_len = ToSockaddr(server->local_addresses[0], &to);
  Fd a = UdpBound();
  Fd b = UdpBound();
  Fd plain = UdpBound();
  auto send = [&](const Fd& fd, uint64_t run, uint64_t seq) {
    std::string d(200, 'x');
    WritePerfHeader({.run_id = run,
                     .sequence = seq,
                     .sent_ns = absl::ToUnixNanos(absl::Now())},
                    d.data());
    ASSERT_EQ(::sendto(fd.get(), d.data(), d.size(), 0,
                       reinterpret_cast<sockaddr*>(&to), to_len),
              200);
  };
  // a: 3 and 7 lost, 5 late.
  for (uint64_t seq : {0, 1, 2, 4, 6, 5, 8}) send(a, 1, seq);
  // b: another run, in order.
  for (uint64_t seq : {0, 1, 2}) send(b, 2, seq);
  // Not a perf datagram: counted as bytes only.
  ASSERT_EQ(::sendto(plain.get(), "hello", 5, 0,
                     reinterpret_cast<sockaddr*>(&to), to_len),
            5);

  std::map<uint16_t, ConnectionInfo> by_port;
  ASSERT_TRUE(WaitFor([&] {
    by_port.clear();
    uint64_t datagrams = 0;
    for (ConnectionInfo& c : sync_->ConnectionsOf(server->id)) {
      datagrams += c.counters.datagrams_received;
      by_port[c.remote.port] = std::move(c);
    }
    return datagrams == 11;
  }));
  const ConnectionInfo& ca = by_port[LocalPort(a.get())];
  ASSERT_TRUE(ca.perf.has_value());
  EXPECT_EQ(ca.perf->run_id, 1u);
  EXPECT_EQ(ca.perf->datagrams, 7u);
  EXPECT_EQ(ca.perf->bytes, 1400u);
  EXPECT_EQ(ca.perf->highest_sequence, 8u);
  EXPECT_EQ(ca.perf->lost, 2u);
  EXPECT_EQ(ca.perf->out_of_order, 1u);
  EXPECT_GE(ca.perf->jitter, absl::ZeroDuration());
  EXPECT_LE(ca.perf->first_at, ca.perf->last_at);
  const ConnectionInfo& cb = by_port[LocalPort(b.get())];
  ASSERT_TRUE(cb.perf.has_value());
  EXPECT_EQ(cb.perf->run_id, 2u);
  EXPECT_EQ(cb.perf->datagrams, 3u);
  EXPECT_EQ(cb.perf->lost, 0u);
  EXPECT_EQ(cb.perf->out_of_order, 0u);
  const ConnectionInfo& cp = by_port[LocalPort(plain.get())];
  EXPECT_FALSE(cp.perf.has_value());
  EXPECT_EQ(cp.counters.bytes_received, 5u);
}

TEST_F(PerfTest, EngineToEngineUdpIsCountedByTheReceivingDiscardServer) {
  absl::StatusOr<ServerInfo> server = sync_->StartServer(
      LoopbackServer(BehaviorKind::kDiscard, Transport::kUdp));
  ASSERT_TRUE(server.ok()) << server.status();
  PerfSpec spec = To(server->local_addresses[0].port, Transport::kUdp);
  spec.parallel = 2;
  spec.udp_rate_bps = 4'000'000;
  spec.duration = absl::Milliseconds(300);
  absl::StatusOr<PerfReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  uint64_t received = 0;
  ASSERT_TRUE(WaitFor([&] {
    received = 0;
    for (const ConnectionInfo& c : sync_->ConnectionsOf(server->id)) {
      if (c.perf.has_value() && c.perf->run_id == report->run_id) {
        received += c.perf->datagrams;
      }
    }
    return received == report->datagrams;
  }));
  EXPECT_EQ(sync_->ConnectionsOf(server->id).size(), 2u);
}

TEST_F(PerfTest, BadSpecsNameTheFieldAndNothingRuns) {
  struct Case {
    std::function<void(PerfSpec&)> edit;
    const char* want;
  } cases[] = {
      {[](PerfSpec& s) { s.transport = Transport::kUnix; }, "transport: "},
      {[](PerfSpec& s) { s.target.host = ""; }, "target.host: "},
      {[](PerfSpec& s) { s.target.host = std::string(2000, 'a'); },
       "target.host: "},
      {[](PerfSpec& s) { s.target.port = "0"; }, "target.port: "},
      {[](PerfSpec& s) { s.target.port = "70000"; }, "target.port: "},
      {[](PerfSpec& s) { s.target.port = ""; }, "target.port: "},
      {[](PerfSpec& s) { s.duration = absl::Seconds(61); }, "duration: "},
      {[](PerfSpec& s) { s.duration = -absl::Seconds(1); }, "duration: "},
      {[](PerfSpec& s) { s.bytes = (uint64_t{1} << 40) + 1; }, "bytes: "},
      {[](PerfSpec& s) { s.parallel = 17; }, "parallel: "},
      {[](PerfSpec& s) { s.udp_rate_bps = 1000; }, "udp_rate_bits_per_sec: "},
      {[](PerfSpec& s) { s.udp_datagram_bytes = 100; }, "udp_datagram_bytes: "},
      {[](PerfSpec& s) {
         s.transport = Transport::kUdp;
         s.udp_rate_bps = 10'000'000'001;
       },
       "udp_rate_bits_per_sec: "},
      {[](PerfSpec& s) {
         s.transport = Transport::kUdp;
         s.udp_datagram_bytes = 31;
       },
       "udp_datagram_bytes: "},
      {[](PerfSpec& s) {
         s.transport = Transport::kUdp;
         s.udp_datagram_bytes = 65508;
       },
       "udp_datagram_bytes: "},
  };
  for (const Case& c : cases) {
    PerfSpec spec = To(9);
    c.edit(spec);
    absl::StatusOr<PerfReport> r = Run(spec);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << c.want << " " << r.status();
    EXPECT_THAT(std::string(r.status().message()), StartsWith(c.want));
  }
}

TEST_F(PerfTest, RefusedConnectFailsTheCallWithTheErrnosWords) {
  absl::StatusOr<PerfReport> r = Run(To(ClosedPort(SOCK_STREAM)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("connection refused"));
}

TEST_F(PerfTest, TheDestinationPolicyAppliesToTheTarget) {
  EngineOptions options;
  // Only 10/8 may be dialled: the loopback target is refused. Nothing
  // is ever sent to 10/8.
  options.policy.destinations = *ParseDestinationRules("10.0.0.0/8");
  MakeEngine(options);
  TcpSink sink;
  absl::StatusOr<PerfReport> r = Run(To(sink.port()));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("127.0.0.1"));
}

TEST_F(PerfTest, CancelEndsTheRunAtOnceAndClosesTheStreams) {
  TcpSink sink;
  PerfSpec spec = To(sink.port());
  spec.parallel = 2;
  spec.duration = absl::Seconds(60);
  absl::Notification done;
  absl::Status status;
  const uint64_t token = engine_->Perf(spec, [&](absl::StatusOr<PerfReport> r) {
    status = r.status();
    done.Notify();
  });
  ASSERT_TRUE(WaitFor([&] { return sink.bytes() > 0; }));
  const absl::Time cancelled = absl::Now();
  engine_->CancelPerf(token);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(10));
  EXPECT_TRUE(WaitFor([&] { return sink.finished() == 2; }));
}

TEST_F(PerfTest, TheCallsDeadlineEndsTheWriting) {
  TcpSink sink;
  PerfSpec spec = To(sink.port());
  spec.duration = absl::Seconds(60);
  spec.deadline = absl::Now() + absl::Milliseconds(300);
  absl::StatusOr<PerfReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LT(report->duration, absl::Seconds(10));
  EXPECT_GT(report->bytes, 0u);
}

TEST_F(PerfTest, AThirdCallAtOnceIsResourceExhausted) {
  UdpSink sink;
  std::vector<uint64_t> tokens;
  std::atomic<int> ended{0};
  for (int i = 0; i < 2; ++i) {
    PerfSpec spec = To(sink.port(), Transport::kUdp);
    spec.duration = absl::Seconds(60);
    spec.udp_rate_bps = 8000;
    tokens.push_back(
        engine_->Perf(spec, [&](absl::StatusOr<PerfReport>) { ++ended; }));
  }
  absl::StatusOr<PerfReport> third = Run(To(sink.port(), Transport::kUdp));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted)
      << third.status();
  EXPECT_THAT(third.status().message(), HasSubstr("2 Perf calls"));
  for (uint64_t token : tokens) engine_->CancelPerf(token);
  EXPECT_TRUE(WaitFor([&] { return ended.load() == 2; }));
}

}  // namespace
}  // namespace sockagent::testing
