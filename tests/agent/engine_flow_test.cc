// Engine tests of flow control and parking: a hold server's bounded receive
// buffer stops TCP reading (the writer stalls, no byte is lost), an echo
// server stops reading while its peer does not read, and a thousand parked
// Receive calls wait without threads and all complete.
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

constexpr uint64_t kTotal = 64ull << 20;

class EngineBackpressure : public EngineTest {};
class EngineParkedReceive : public EngineTest {};

// Waits until `progress` stops changing for `quiet`: the observation that a
// writer is blocked. Returns false if it never settles within kTimeout.
bool Stalls(const std::atomic<uint64_t>& progress, absl::Duration quiet) {
  uint64_t last = progress.load();
  absl::Time since = absl::Now();
  return WaitFor([&] {
    const uint64_t now = progress.load();
    if (now != last) {
      last = now;
      since = absl::Now();
    }
    return absl::Now() - since >= quiet;
  });
}

// Writes `total` pattern bytes in 1 MiB pieces, counting progress.
void WritePattern(int fd, uint64_t total, std::atomic<uint64_t>* written) {
  constexpr size_t kPiece = 1 << 20;
  for (uint64_t off = 0; off < total; off += kPiece) {
    const std::string piece =
        Pattern(off, std::min<uint64_t>(kPiece, total - off));
    absl::string_view rest = piece;
    while (!rest.empty()) {
      const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      rest.remove_prefix(n);
      written->fetch_add(n);
    }
  }
}

TEST_F(EngineBackpressure, HoldServerStopsReadingWhenFullAndLosesNothing) {
  const uint64_t bound = engine_->options().recv_buffer_bytes;  // 4 MiB.
  Fd client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&client);
  ASSERT_TRUE(server.ok()) << server.status();
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    WritePattern(client.get(), kTotal, &written);
    ::shutdown(client.get(), SHUT_WR);
  });

  // Nobody receives: the buffer fills to its bound and reading stops.
  std::optional<ConnectionInfo> conn =
      sync_->ConnectionWhen("conn-1", [&](const ConnectionInfo& c) {
        return c.counters.recv_buffered == bound;
      });
  ASSERT_TRUE(conn.has_value());
  ASSERT_TRUE(Stalls(written, absl::Milliseconds(300)));
  const uint64_t stalled_at = written.load();
  conn = sync_->Connection("conn-1");
  EXPECT_LT(stalled_at, kTotal);
  EXPECT_EQ(conn->counters.recv_buffered, bound);
  EXPECT_EQ(conn->counters.recv_buffered_peak, bound);
  EXPECT_EQ(conn->counters.bytes_received, bound);
  std::fprintf(
      stderr,
      "[ measure  ] writer stalled after %llu bytes; engine buffered "
      "%llu (peak %llu, bound %llu)\n",
      static_cast<unsigned long long>(stalled_at),
      static_cast<unsigned long long>(conn->counters.recv_buffered),
      static_cast<unsigned long long>(conn->counters.recv_buffered_peak),
      static_cast<unsigned long long>(bound));

  // Drain: every byte arrives, in order.
  uint64_t received = 0;
  bool eof = false;
  bool match = true;
  while (!eof && received <= kTotal) {
    absl::StatusOr<ReceiveResult> r =
        sync_->Receive("conn-1", absl::Seconds(10), 1 << 20);
    ASSERT_TRUE(r.ok()) << r.status();
    if (match && r->data != Pattern(received, r->data.size())) {
      match = false;
      ADD_FAILURE() << "mismatch in the chunk at offset " << received;
    }
    received += r->data.size();
    eof = r->end_of_stream;
  }
  writer.join();
  EXPECT_TRUE(eof);
  EXPECT_EQ(received, kTotal);
  conn = sync_->Connection("conn-1");
  EXPECT_EQ(conn->counters.bytes_received, kTotal);
  // The bound holds exactly: a read never takes more than the room left.
  EXPECT_LE(conn->counters.recv_buffered_peak, bound);
}

TEST_F(EngineBackpressure, EchoStopsReadingWhilePeerDoesNotRead) {
  EngineOptions options;
  options.send_buffer_bytes = 1 << 20;
  options.max_send_bytes = 1 << 20;
  MakeEngine(options);
  Fd client;
  absl::StatusOr<ServerInfo> server =
      StartWithClient(&client, LoopbackServer(BehaviorKind::kEcho));
  ASSERT_TRUE(server.ok()) << server.status();
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    WritePattern(client.get(), kTotal, &written);
    ::shutdown(client.get(), SHUT_WR);
  });
  // The client does not read: echoes pile up to the send bound, then the
  // engine stops reading and the writer stalls.
  ASSERT_TRUE(sync_->ConnectionWhen("conn-1", [&](const ConnectionInfo& c) {
    return c.counters.send_buffered == options.send_buffer_bytes;
  }));
  ASSERT_TRUE(Stalls(written, absl::Milliseconds(300)));
  EXPECT_LT(written.load(), kTotal);
  // Now read everything back: all of it, in order.
  uint64_t got = 0;
  bool match = true;
  while (got < kTotal) {
    const std::string chunk =
        ReadExactly(client.get(), std::min<uint64_t>(1 << 20, kTotal - got));
    if (chunk.empty()) break;
    if (match && chunk != Pattern(got, chunk.size())) {
      match = false;
      ADD_FAILURE() << "mismatch at offset " << got;
    }
    got += chunk.size();
  }
  writer.join();
  EXPECT_EQ(got, kTotal);
  EXPECT_EQ(ReadToEof(client.get()), "");
  std::optional<ConnectionInfo> conn =
      sync_->ConnectionWhen("conn-1", [&](const ConnectionInfo& c) {
        return c.state == ConnectionState::kClosed;
      });
  ASSERT_TRUE(conn.has_value());
  EXPECT_LE(conn->counters.send_buffered_peak, options.send_buffer_bytes);
  EXPECT_EQ(conn->counters.bytes_sent, kTotal);
}

TEST_F(EngineParkedReceive, ThousandParkedReceivesAllComplete) {
  constexpr int kConns = 1000;
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<Fd> clients;
  clients.reserve(kConns);
  for (int i = 0; i < kConns; ++i) {
    clients.push_back(TcpConnect(server->local_addresses[0]));
    ASSERT_TRUE(clients.back().valid());
  }
  std::vector<ConnectionInfo> conns;
  ASSERT_TRUE(WaitFor([&] {
    conns = sync_->ConnectionsOf(server->id);
    return conns.size() == kConns;
  }));
  // Map each engine connection to its client by the client's port.
  absl::Mutex mu;
  std::vector<std::string> results(kConns);
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  std::vector<int> client_of(kConns, -1);
  for (int i = 0; i < kConns; ++i) {
    for (int j = 0; j < kConns; ++j) {
      if (conns[i].remote.port == LocalPort(clients[j].get())) client_of[i] = j;
    }
    ASSERT_NE(client_of[i], -1);
  }
  for (int i = 0; i < kConns; ++i) {
    ReceiveSpec spec;
    spec.wait = absl::Seconds(60);
    engine_->Receive(conns[i].id, spec,
                     [&, i](absl::StatusOr<ReceiveResult> r) {
                       if (!r.ok()) {
                         failed.fetch_add(1);
                       } else {
                         absl::MutexLock lock(&mu);
                         results[i] = r->data;
                       }
                       completed.fetch_add(1);
                     });
  }
  // Parked, they cost no thread: other calls stay prompt.
  const absl::Time start = absl::Now();
  ASSERT_TRUE(sync_->ListServers(ServerFilter{}).ok());
  const absl::Duration list_took = absl::Now() - start;
  EXPECT_LT(list_took, absl::Seconds(1));
  EXPECT_EQ(completed.load(), 0);
  std::fprintf(stderr, "[ measure  ] ListServers with %d parked receives: %s\n",
               kConns, absl::FormatDuration(list_took).c_str());

  for (int i = 0; i < kConns; ++i) {
    ASSERT_TRUE(WriteAll(clients[i].get(), absl::StrCat("msg-", i)));
  }
  ASSERT_TRUE(WaitFor([&] { return completed.load() == kConns; }));
  EXPECT_EQ(failed.load(), 0);
  absl::MutexLock lock(&mu);
  for (int i = 0; i < kConns; ++i) {
    EXPECT_EQ(results[i], absl::StrCat("msg-", client_of[i])) << i;
  }
}

TEST_F(EngineParkedReceive, ParkedReceiveEndsAtPeerFinAndReset) {
  Fd fin_client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&fin_client);
  ASSERT_TRUE(server.ok()) << server.status();
  Fd rst_client = TcpConnect(server->local_addresses[0]);
  std::vector<ConnectionInfo> conns;
  ASSERT_TRUE(WaitFor([&] {
    conns = sync_->ConnectionsOf(server->id);
    return conns.size() == 2;
  }));
  // Which connection is whose.
  if (conns[0].remote.port != LocalPort(fin_client.get())) {
    std::swap(conns[0], conns[1]);
  }
  absl::Notification fin_done, rst_done;
  absl::StatusOr<ReceiveResult> fin_result, rst_result;
  ReceiveSpec spec;
  spec.wait = absl::Seconds(60);
  engine_->Receive(conns[0].id, spec, [&](absl::StatusOr<ReceiveResult> r) {
    fin_result = std::move(r);
    fin_done.Notify();
  });
  engine_->Receive(conns[1].id, spec, [&](absl::StatusOr<ReceiveResult> r) {
    rst_result = std::move(r);
    rst_done.Notify();
  });
  ::shutdown(fin_client.get(), SHUT_WR);
  CloseWithReset(rst_client);
  ASSERT_TRUE(fin_done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(rst_done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(fin_result.ok());
  EXPECT_TRUE(fin_result->end_of_stream);
  EXPECT_EQ(rst_result.status().code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace sockagent::testing
