// WatchHub: filters, bounded queues with the lost-event marker where the gap
// is, the agent-wide watch bytes, wakes, and snapshots. Events are built by
// hand, as the engine's Emit builds them.
#include "agent/watch_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sockagent::engine_internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = EngineEventKind;

uint64_t AddWatcher(WatchHub& hub, WatchFilter filter, size_t limit = 0,
                    int* wakes = nullptr) {
  absl::StatusOr<std::unique_ptr<Watcher>> w =
      WatchHub::MakeWatcher(std::move(filter), limit, [wakes] {
        if (wakes != nullptr) ++*wakes;
      });
  EXPECT_TRUE(w.ok()) << w.status();
  return hub.Add(*std::move(w));
}

// Publishes an event of `kind` about conn-`conn` of srv-`server`.
void Publish(WatchHub& hub, Kind kind, uint64_t server, uint64_t conn,
             const Labels* labels = nullptr, absl::string_view data = {}) {
  EngineEvent e;
  e.seq = hub.NextSeq();
  e.kind = kind;
  e.size = data.size();
  hub.Publish(e, server, conn, labels, data,
              [](EngineEvent& ev) { ev.message = "with snapshot"; });
}

std::vector<Kind> Kinds(const std::vector<EngineEvent>& events) {
  std::vector<Kind> kinds;
  for (const EngineEvent& e : events) kinds.push_back(e.kind);
  return kinds;
}

TEST(WatchHub, MalformedFiltersAreRefusedWithWhatIsWrong) {
  WatchFilter f;
  f.server_id = "server-1";
  absl::StatusOr<std::unique_ptr<Watcher>> w =
      WatchHub::MakeWatcher(f, 0, nullptr);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("malformed server id"));
  f = WatchFilter{};
  f.connection_id = "conn-0";
  w = WatchHub::MakeWatcher(f, 0, nullptr);
  EXPECT_THAT(w.status().message(), HasSubstr("malformed connection id"));
  f = WatchFilter{};
  f.kinds = {static_cast<Kind>(kMaxEngineEventKind + 1)};
  w = WatchHub::MakeWatcher(f, 0, nullptr);
  EXPECT_THAT(w.status().message(), HasSubstr("unknown event kind"));
  // The queue bound: the default for 0, at least 2, at most the maximum.
  EXPECT_EQ((*WatchHub::MakeWatcher({}, 0, nullptr))->limit,
            kDefaultWatchQueueEvents);
  EXPECT_EQ((*WatchHub::MakeWatcher({}, 1, nullptr))->limit, 2u);
  EXPECT_EQ((*WatchHub::MakeWatcher({}, 1u << 30, nullptr))->limit,
            kMaxWatchQueueEvents);
}

TEST(WatchHub, EventsGoOnlyToMatchingWatchers) {
  WatchHub hub(1 << 20);
  EXPECT_FALSE(hub.HasWatchers());
  WatchFilter by_conn;
  by_conn.connection_id = "conn-2";
  WatchFilter by_kind;
  by_kind.kinds = {Kind::kDataReceived};
  WatchFilter by_label;
  by_label.selector = {{"team", "a"}};
  by_label.include_data_bytes = 3;
  const uint64_t conn_w = AddWatcher(hub, by_conn);
  const uint64_t kind_w = AddWatcher(hub, by_kind);
  const uint64_t label_w = AddWatcher(hub, by_label);
  EXPECT_TRUE(hub.HasWatchers());

  const Labels team_a = {{"team", "a"}};
  Publish(hub, Kind::kConnectionAccepted, 1, 2, &team_a);
  Publish(hub, Kind::kDataReceived, 1, 3, nullptr, "hello");
  Publish(hub, Kind::kDataReceived, 1, 2, &team_a, "hello");

  std::vector<EngineEvent> got = hub.Drain(conn_w, 10);
  EXPECT_THAT(Kinds(got),
              ElementsAre(Kind::kConnectionAccepted, Kind::kDataReceived));
  // Lifecycle events carry the object's snapshot; data events do not.
  EXPECT_EQ(got[0].message, "with snapshot");
  EXPECT_EQ(got[1].message, "");
  EXPECT_EQ(got[1].data, "");  // include_data_bytes 0.
  EXPECT_THAT(Kinds(hub.Drain(kind_w, 10)),
              ElementsAre(Kind::kDataReceived, Kind::kDataReceived));
  got = hub.Drain(label_w, 10);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].data, "hel");
  EXPECT_EQ(got[1].size, 5u);
}

TEST(WatchHub, AFullQueueCountsLossesAndMarksTheGap) {
  WatchHub hub(1 << 20);
  int wakes = 0;
  const uint64_t id = AddWatcher(hub, {}, /*limit=*/3, &wakes);
  for (int i = 0; i < 10; ++i) Publish(hub, Kind::kDataSent, 0, 1);
  EXPECT_EQ(hub.Queued(id), 3u);
  EXPECT_EQ(wakes, 1);  // Only when the queue was empty.
  // Draining part of the queue: no marker yet, the gap is after it.
  EXPECT_THAT(Kinds(hub.Drain(id, 2)),
              ElementsAre(Kind::kDataSent, Kind::kDataSent));
  // The next event that fits comes after the marker.
  Publish(hub, Kind::kDataSent, 0, 1);
  std::vector<EngineEvent> got = hub.Drain(id, 10);
  EXPECT_THAT(Kinds(got),
              ElementsAre(Kind::kDataSent, Kind::kEventsLost, Kind::kDataSent));
  EXPECT_EQ(got[1].lost, 7u);
  EXPECT_EQ(got[1].seq, 10u);  // The last one lost.
  EXPECT_THAT(got[1].message, HasSubstr("7 events lost"));
  // A drain that empties the queue appends a pending marker.
  for (int i = 0; i < 5; ++i) Publish(hub, Kind::kDataSent, 0, 1);
  got = hub.Drain(id, 10);
  EXPECT_THAT(Kinds(got), ElementsAre(Kind::kDataSent, Kind::kDataSent,
                                      Kind::kDataSent, Kind::kEventsLost));
  EXPECT_EQ(got.back().lost, 2u);
  EXPECT_TRUE(hub.Drain(id, 10).empty());
}

TEST(WatchHub, AllQueuesTogetherStayWithinMaxWatchBytes) {
  EngineEvent probe;
  probe.kind = Kind::kDataSent;
  const uint64_t one = EventBytes(probe);
  // Room for three events across both watchers.
  WatchHub hub(3 * one);
  const uint64_t a = AddWatcher(hub, {});
  const uint64_t b = AddWatcher(hub, {});
  Publish(hub, Kind::kDataSent, 0, 1);
  Publish(hub, Kind::kDataSent, 0, 1);
  const size_t queued_a = hub.Queued(a);
  EXPECT_EQ(queued_a + hub.Queued(b), 3u);
  // Removing a watcher hands its bytes back...
  EXPECT_EQ(hub.Remove(a), queued_a * one);
  EXPECT_EQ(hub.Remove(a), 0u);
  // ...and the other one has room again. It holds two events, or one and
  // the marker of the one it lost, whichever order the watchers were
  // served in.
  EXPECT_EQ(hub.Drain(b, 10).size(), 2u);
  Publish(hub, Kind::kDataSent, 0, 1);
  EXPECT_THAT(Kinds(hub.Drain(b, 10)), ElementsAre(Kind::kDataSent));
}

TEST(WatchHub, SnapshotComesFirstThenLiveEvents) {
  WatchHub hub(1 << 20);
  Publish(hub, Kind::kDataSent, 0, 1);  // Nobody watches: numbered anyway.
  WatchFilter f;
  f.snapshot = true;
  f.kinds = {Kind::kDataSent};
  int wakes = 0;
  const uint64_t id = AddWatcher(hub, f, 0, &wakes);
  // Inactive until its snapshot is taken: live events do not reach it.
  Publish(hub, Kind::kDataSent, 0, 1);
  EXPECT_EQ(hub.Queued(id), 0u);
  hub.Snapshot(id, [](WatchHub::SnapshotSink& sink) {
    // The kinds filter does not apply to snapshot events.
    ASSERT_TRUE(sink.Wants(Kind::kSnapshotConnection, 0, 1, nullptr));
    sink.Push(sink.Make(Kind::kSnapshotConnection));
  });
  EXPECT_EQ(wakes, 1);
  Publish(hub, Kind::kDataSent, 0, 1);
  Publish(hub, Kind::kDataReceived, 0, 1);  // Filtered out again.
  std::vector<EngineEvent> got = hub.Drain(id, 10);
  EXPECT_THAT(Kinds(got), ElementsAre(Kind::kSnapshotConnection,
                                      Kind::kSnapshotEnd, Kind::kDataSent));
  EXPECT_EQ(got[0].seq, 2u);
  EXPECT_EQ(got[1].seq, 2u);
  EXPECT_EQ(got[2].seq, 3u);
  // An unknown or removed watcher: nothing happens.
  hub.Snapshot(999, [](WatchHub::SnapshotSink&) { ADD_FAILURE(); });
}

}  // namespace
}  // namespace sockagent::engine_internal
