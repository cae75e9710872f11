// Live events (Engine::Subscribe/Drain): order and content for a hold
// server talking to a plain POSIX peer, filters, the snapshot, and the
// bounded queue of a watcher that never drains.
#include <sys/socket.h>

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using Kind = EngineEventKind;

class EngineEvents : public EngineTest {
 protected:
  uint64_t Watch(WatchFilter filter, size_t limit = 0) {
    auto id = engine_->Subscribe(std::move(filter), limit, [] {});
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }
  // Drains watcher `id` into events_ until an event satisfies `until`.
  bool DrainUntil(uint64_t id,
                  const std::function<bool(const EngineEvent&)>& until) {
    return WaitFor(
        [&] {
          for (EngineEvent& e : engine_->Drain(id, 1000)) {
            events_.push_back(std::move(e));
            if (until(events_.back())) return true;
          }
          return false;
        },
        kTimeout);
  }
  std::vector<Kind> Kinds() const {
    std::vector<Kind> kinds;
    for (const auto& e : events_) kinds.push_back(e.kind);
    return kinds;
  }
  std::vector<EngineEvent> events_;
};

auto IsKind(Kind kind) {
  return [kind](const EngineEvent& e) { return e.kind == kind; };
}

TEST_F(EngineEvents, HoldServerShowsAcceptedDataClosedInOrder) {
  WatchFilter filter;
  filter.include_data_bytes = 3;
  const uint64_t id = Watch(filter);
  Fd client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&client);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t client_port = LocalPort(client.get());
  ASSERT_TRUE(WriteAll(client.get(), "hello"));
  ASSERT_TRUE(DrainUntil(id, IsKind(Kind::kDataReceived)));
  client.Reset();
  ASSERT_TRUE(DrainUntil(id, IsKind(Kind::kConnectionPeerClosed)));
  const std::string conn_id = events_.back().connection_id;
  ASSERT_TRUE(sync_->Close(Selector{conn_id, {}}, CloseMode::kGraceful).ok());
  ASSERT_TRUE(DrainUntil(id, IsKind(Kind::kConnectionClosed)));

  EXPECT_THAT(Kinds(), ::testing::ElementsAre(
                           Kind::kServerStarted, Kind::kConnectionAccepted,
                           Kind::kDataReceived, Kind::kConnectionPeerClosed,
                           Kind::kConnectionClosed));
  for (size_t i = 1; i < events_.size(); ++i) {
    EXPECT_GT(events_[i].seq, events_[i - 1].seq);
    EXPECT_EQ(events_[i].server_id, server->id);
    EXPECT_EQ(events_[i].connection_id, conn_id);
  }
  ASSERT_TRUE(events_[0].server.has_value());
  EXPECT_EQ(events_[0].server->id, server->id);
  const EngineEvent& accepted = events_[1];
  ASSERT_TRUE(accepted.connection.has_value());
  EXPECT_EQ(accepted.connection->remote.ip, "127.0.0.1");
  EXPECT_EQ(accepted.connection->remote.port, client_port);
  EXPECT_EQ(events_[2].size, 5u);
  EXPECT_EQ(events_[2].data, "hel");
  EXPECT_FALSE(events_[2].connection.has_value());  // Data: no snapshot.
  EXPECT_EQ(events_[4].close_reason, CloseReason::kLocalClose);
  engine_->Unsubscribe(id);
}

TEST_F(EngineEvents, FiltersByServerKindAndLabels) {
  ServerSpec a_spec = LoopbackServer(BehaviorKind::kDiscard);
  a_spec.labels = {{"team", "a"}};
  auto a = sync_->StartServer(a_spec);
  auto b = sync_->StartServer(LoopbackServer(BehaviorKind::kDiscard));
  ASSERT_TRUE(a.ok() && b.ok());

  WatchFilter f;
  f.server_id = b->id;
  const uint64_t by_server = Watch(f);
  f = {};
  f.kinds = {Kind::kConnectionAccepted};
  const uint64_t by_kind = Watch(f);
  f = {};
  f.selector = {{"team", "a"}};
  const uint64_t by_label = Watch(f);
  f = {};
  f.server_id = "bogus";
  EXPECT_FALSE(engine_->Subscribe(f, 0, [] {}).ok());

  for (const auto& s : {*a, *b}) {
    Fd c = TcpConnect(s.local_addresses[0]);
    ASSERT_TRUE(WriteAll(c.get(), "x"));
  }
  // Both connections closed by their discard servers once we close ours;
  // until then, wait for both accepts on the kinds watcher.
  ASSERT_TRUE(
      WaitFor([&] { return engine_->QueuedEvents(by_kind) == 2; }, kTimeout));
  ASSERT_TRUE(DrainUntil(by_server, IsKind(Kind::kConnectionClosed)));
  for (const auto& e : events_) EXPECT_EQ(e.server_id, b->id);
  events_.clear();
  ASSERT_TRUE(DrainUntil(by_label, IsKind(Kind::kConnectionClosed)));
  for (const auto& e : events_) EXPECT_EQ(e.server_id, a->id);
  events_.clear();
  for (const auto& e : engine_->Drain(by_kind, 100)) {
    EXPECT_EQ(e.kind, Kind::kConnectionAccepted);
  }
}

TEST_F(EngineEvents, SnapshotListsOpenObjectsThenEnds) {
  Fd client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&client);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(
      WaitFor([&] { return sync_->ConnectionsOf(server->id).size() == 1; }));
  WatchFilter f;
  f.snapshot = true;
  const uint64_t id = Watch(f);
  ASSERT_TRUE(DrainUntil(id, IsKind(Kind::kSnapshotEnd)));
  EXPECT_THAT(Kinds(), ::testing::ElementsAre(Kind::kSnapshotServer,
                                              Kind::kSnapshotConnection,
                                              Kind::kSnapshotEnd));
  EXPECT_EQ(events_[0].server->id, server->id);
  EXPECT_EQ(events_[1].connection->server_id, server->id);
  // Live events follow.
  ASSERT_TRUE(WriteAll(client.get(), "abc"));
  ASSERT_TRUE(DrainUntil(id, IsKind(Kind::kDataReceived)));
}

TEST_F(EngineEvents, StalledWatcherStaysBoundedAndLearnsWhatItLost) {
  constexpr size_t kLimit = 1024;
  constexpr int kDatagrams = 100000;
  constexpr int kBurst = 64;
  const uint64_t id = Watch({}, kLimit);
  auto server = sync_->StartServer(
      LoopbackServer(BehaviorKind::kDiscard, Transport::kUdp));
  ASSERT_TRUE(server.ok()) << server.status();
  Fd peer = UdpBound();
  const std::string payload(16, 'u');
  size_t max_queued = 0;
  // Paced in bursts so the kernel never drops: every datagram is counted.
  for (int sent = 0; sent < kDatagrams;) {
    for (int i = 0; i < kBurst && sent < kDatagrams; ++i, ++sent) {
      ASSERT_TRUE(SendTo(peer.get(), payload, server->local_addresses[0]));
    }
    ASSERT_TRUE(WaitFor(
        [&] {
          auto s = sync_->ListServers({});
          return s.ok() && !s->items.empty() &&
                 s->items[0].counters.datagrams_received ==
                     static_cast<uint64_t>(sent);
        },
        kTimeout))
        << "sent " << sent;
    max_queued = std::max(max_queued, engine_->QueuedEvents(id));
  }
  EXPECT_LE(max_queued, kLimit);
  auto listed = sync_->ListServers({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->items[0].counters.bytes_received,
            uint64_t{kDatagrams} * payload.size());
  EXPECT_EQ(listed->items[0].counters.datagrams_dropped, 0u);

  // Everything queued, then the marker; one more event after it is live.
  uint64_t delivered = 0, lost = 0, lost_markers = 0;
  std::vector<EngineEvent> all = engine_->Drain(id, 2 * kLimit);
  ASSERT_TRUE(sync_->StopServers(Selector{server->id, {}}).ok());
  ASSERT_TRUE(DrainUntil(id, IsKind(Kind::kServerStopped)));
  for (auto& e : events_) all.push_back(std::move(e));
  for (const auto& e : all) {
    if (e.kind == Kind::kEventsLost) {
      ++lost_markers;
      lost += e.lost;
    } else {
      ++delivered;
    }
  }
  EXPECT_EQ(lost_markers, 1u);
  EXPECT_EQ(all[kLimit].kind, Kind::kEventsLost);
  ASSERT_EQ(all.front().kind, Kind::kServerStarted);
  ASSERT_EQ(all.back().kind, Kind::kServerStopped);
  // No filter: every event from the first to the last is delivered or lost.
  EXPECT_EQ(delivered + lost, all.back().seq - all.front().seq + 1);
  EXPECT_GE(lost, uint64_t{kDatagrams} - kLimit);
}

TEST_F(EngineEvents, NobodyWatchingAfterUnsubscribe) {
  const uint64_t id = Watch({});
  engine_->Unsubscribe(id);
  engine_->Unsubscribe(id);  // Idempotent.
  ASSERT_TRUE(sync_->StartServer(LoopbackServer(BehaviorKind::kHold)).ok());
  EXPECT_TRUE(engine_->Drain(id, 10).empty());
}

}  // namespace
}  // namespace sockagent::testing
