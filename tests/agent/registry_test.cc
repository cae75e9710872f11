// Registry: numbering, the live counts the admission limits read, listing
// pages and their tokens, and trimming of the closed history. Records are
// plain Conn/Server structs: no sockets, no loop.
#include "agent/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/engine_impl.h"

namespace sockagent::engine_internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Conn& AddConn(Registry& r, uint64_t server_num = 0) {
  auto c = std::make_unique<Conn>();
  c->num = r.NewConnNum();
  c->server_num = server_num;
  return r.AddConn(std::move(c));
}

// What Finalize does to a record, as far as the registry sees it.
void Close(Registry& r, Conn& c) {
  c.state = ConnectionState::kClosed;
  c.finalized = true;
  r.ConnFinalized(c.num);
}

std::vector<std::string> Ids(const Page<ConnectionInfo>& page) {
  std::vector<std::string> ids;
  for (const ConnectionInfo& c : page.items) ids.push_back(c.id);
  return ids;
}

TEST(Registry, NumbersServersAndConnectionsFromOne) {
  Registry r;
  Server& s = r.AddServer(std::make_unique<Server>());
  EXPECT_EQ(s.num, 1u);
  EXPECT_EQ(r.AddServer(std::make_unique<Server>()).num, 2u);
  EXPECT_EQ(r.listening_servers(), 2u);
  Conn& c = AddConn(r, s.num);
  EXPECT_EQ(c.num, 1u);
  EXPECT_EQ(r.FindConn(1), &c);
  EXPECT_EQ(r.FindServer(1), &s);
  EXPECT_EQ(r.FindServer(0), nullptr);
  EXPECT_EQ(r.FindConn(2), nullptr);
  EXPECT_EQ(r.live_conns(), 1u);
  Close(r, c);
  EXPECT_EQ(r.live_conns(), 0u);
  EXPECT_EQ(r.FindConn(1), &c);  // Still listable: history.
  r.ServerStopped(s.num);
  EXPECT_EQ(r.listening_servers(), 1u);
  EXPECT_EQ(r.stopped_servers(), 1u);
}

TEST(Registry, LookupConnSaysWhichIdWasNotFound) {
  Registry r;
  AddConn(r);
  ASSERT_TRUE(r.LookupConn("conn-1").ok());
  for (const char* id : {"conn-2", "conn-0", "conn-", "srv-1", "conn-1x"}) {
    absl::StatusOr<Conn*> c = r.LookupConn(id);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound) << id;
    EXPECT_THAT(c.status().message(), HasSubstr(id));
  }
}

TEST(Registry, PagesFollowTheirTokensToTheEnd) {
  Registry r;
  for (int i = 0; i < 25; ++i) AddConn(r);
  ConnectionFilter f;
  f.page_size = 10;
  std::vector<std::string> seen;
  int pages = 0;
  for (;;) {
    absl::StatusOr<Page<ConnectionInfo>> page = r.ListConnections(f);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const std::string& id : Ids(*page)) seen.push_back(id);
    if (page->next_page_token.empty()) break;
    EXPECT_EQ(page->next_page_token, page->items.back().id);
    f.page_token = page->next_page_token;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "conn-1");
  EXPECT_EQ(seen.back(), "conn-25");
}

TEST(Registry, PageSizeDefaultsTo100AndIsCappedAt1000) {
  Registry r;
  for (int i = 0; i < 1500; ++i) AddConn(r);
  ConnectionFilter f;
  absl::StatusOr<Page<ConnectionInfo>> page = r.ListConnections(f);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 100u);
  f.page_size = 1'000'000;
  page = r.ListConnections(f);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 1000u);
  EXPECT_EQ(page->next_page_token, "conn-1000");
}

TEST(Registry, ListingsRejectBadTokensAndFilterByServerAndState) {
  Registry r;
  Server& s = r.AddServer(std::make_unique<Server>());
  AddConn(r);
  AddConn(r, s.num);
  Close(r, AddConn(r, s.num));
  ConnectionFilter f;
  f.page_token = "srv-1";
  EXPECT_EQ(r.ListConnections(f).status().code(),
            absl::StatusCode::kInvalidArgument);
  ServerFilter sf;
  sf.page_token = "x";
  EXPECT_EQ(r.ListServers(sf).status().code(),
            absl::StatusCode::kInvalidArgument);

  f = ConnectionFilter{};
  f.server_id = "srv-1";
  EXPECT_THAT(Ids(*r.ListConnections(f)), ElementsAre("conn-2"));
  f.include_closed = true;
  EXPECT_THAT(Ids(*r.ListConnections(f)), ElementsAre("conn-2", "conn-3"));
  f.server_id = "not-a-server";  // Matches nothing, no error.
  EXPECT_TRUE(r.ListConnections(f)->items.empty());

  r.FindServer(1)->info.state = ServerState::kStopped;
  r.ServerStopped(1);
  sf = ServerFilter{};
  EXPECT_TRUE(r.ListServers(sf)->items.empty());
  sf.include_stopped = true;
  ASSERT_EQ(r.ListServers(sf)->items.size(), 1u);
}

TEST(Registry, TrimKeepsTheNewestClosedRecords) {
  Registry r;
  for (int i = 0; i < 6; ++i) AddConn(r);
  // Closed out of number order: history order is closing order.
  for (uint64_t num : {4, 1, 6, 2}) Close(r, *r.FindConn(num));
  std::vector<uint64_t> erased;
  r.TrimClosed(1, [&erased](Conn& c) { erased.push_back(c.num); });
  EXPECT_THAT(erased, ElementsAre(4, 1, 6));
  EXPECT_EQ(r.closed_conns(), 1u);
  EXPECT_EQ(r.FindConn(4), nullptr);
  EXPECT_NE(r.FindConn(2), nullptr);
  EXPECT_NE(r.FindConn(3), nullptr);  // Open: never trimmed.
  EXPECT_EQ(r.conns().size(), 3u);
  // Within the bound: nothing goes.
  r.TrimClosed(1, [](Conn&) { ADD_FAILURE(); });
}

TEST(Registry, VisitClosedGoesOldestFirstAndStopsWhenAsked) {
  Registry r;
  for (int i = 0; i < 4; ++i) AddConn(r);
  for (uint64_t num : {3, 1, 4}) Close(r, *r.FindConn(num));
  std::vector<uint64_t> visited;
  r.VisitClosed([&visited](Conn& c) {
    visited.push_back(c.num);
    return visited.size() < 2;
  });
  EXPECT_THAT(visited, ElementsAre(3, 1));
}

TEST(Registry, TrimStoppedServersKeepsTheNewest) {
  Registry r;
  for (int i = 0; i < 5; ++i) r.AddServer(std::make_unique<Server>());
  for (uint64_t num : {2, 5, 1}) r.ServerStopped(num);
  r.TrimStopped(1);
  EXPECT_EQ(r.FindServer(2), nullptr);
  EXPECT_EQ(r.FindServer(5), nullptr);
  EXPECT_NE(r.FindServer(1), nullptr);
  EXPECT_EQ(r.servers().size(), 3u);
  EXPECT_EQ(r.stopped_servers(), 1u);
}

}  // namespace
}  // namespace sockagent::engine_internal
