// The Connector (agent/connector.h) on the resolver pool the caller gives
// Engine::Create: the engine's name lookups share that pool's threads and
// queue, a full queue fails a lookup at once, and a lookup that ends after
// the engine is gone is dropped. Every pool here is numeric-only, so no
// test asks the machine's DNS server anything.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

ResolveQuery Numeric127() {
  ResolveQuery q;
  q.host = "127.0.0.1";
  q.numeric_host = true;
  return q;
}

// Occupies the pool's only thread until `release` is notified.
void BlockOnlyThread(ResolverPool& pool, absl::Notification& started,
                     absl::Notification& release) {
  ResolveQuery q = Numeric127();
  ASSERT_TRUE(pool.SubmitResolve(q, absl::InfiniteFuture(), [&](auto) {
    started.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(60));
  }));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
}

EngineOptions NumericOnly() {
  EngineOptions o;
  o.numeric_hosts_only = true;
  return o;
}

ResolverPool::Options OneThreadOneSlot() {
  return {.threads = 1, .max_queued = 1, .numeric_hosts_only = true};
}

TEST(Connector, FullResolverQueueFailsNameLookupsAtOnce) {
  ResolverPool pool(OneThreadOneSlot());
  absl::Notification started, release, queued_done;
  BlockOnlyThread(pool, started, release);
  // The pool's one queue slot, taken by someone else (a Resolve RPC).
  ResolveQuery q = Numeric127();
  ASSERT_TRUE(pool.SubmitResolve(q, absl::InfiniteFuture(),
                                 [&](auto) { queued_done.Notify(); }));
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(NumericOnly(), &pool);
  ASSERT_TRUE(engine.ok()) << engine.status();
  SyncEngine sync(engine->get());

  ClientSpec client;
  client.remote.host = "localhost";
  client.remote.port = "80";
  absl::StatusOr<ConnectionInfo> opened = sync.OpenClient(client);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kResourceExhausted)
      << opened.status();
  EXPECT_THAT(opened.status().message(),
              HasSubstr("resolve localhost: too many name lookups are in "
                        "progress; retry later"));

  ServerSpec server;
  server.bind.host = "localhost";
  server.bind.port = "0";
  absl::StatusOr<ServerInfo> started_server = sync.StartServer(server);
  EXPECT_EQ(started_server.status().code(),
            absl::StatusCode::kResourceExhausted)
      << started_server.status();

  // Numeric addresses never need the pool.
  absl::StatusOr<ServerInfo> numeric =
      sync.StartServer(LoopbackServer(BehaviorKind::kHold));
  EXPECT_TRUE(numeric.ok()) << numeric.status();

  release.Notify();
  ASSERT_TRUE(queued_done.WaitForNotificationWithTimeout(kTimeout));
  (*engine)->Shutdown();
}

TEST(Connector, LookupEndingAfterTheEngineIsGoneIsDropped) {
  ResolverPool pool(OneThreadOneSlot());
  absl::Notification started, release;
  BlockOnlyThread(pool, started, release);
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(NumericOnly(), &pool);
  ASSERT_TRUE(engine.ok()) << engine.status();

  // Queued behind the blocked thread: it runs only after the engine is gone.
  absl::Notification answered;
  absl::Status answer;
  ClientSpec client;
  client.remote.host = "localhost";
  client.remote.port = "80";
  (*engine)->OpenClient(client, absl::InfiniteFuture(),
                        [&](absl::StatusOr<ConnectionInfo> r) {
                          answer = r.status();
                          answered.Notify();
                        });
  (*engine)->Shutdown();
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(answer.code(), absl::StatusCode::kUnavailable) << answer;
  engine->reset();

  // The lookup now runs and answers a Connector that no longer exists (under
  // ASan a use after free fails here). The next job runs after it: once it
  // is done, so is the dropped one.
  release.Notify();
  absl::Notification after;
  ResolveQuery q = Numeric127();
  ASSERT_TRUE(WaitFor([&] {
    return pool.SubmitResolve(q, absl::InfiniteFuture(),
                              [&](auto) { after.Notify(); });
  }));
  EXPECT_TRUE(after.WaitForNotificationWithTimeout(kTimeout));
}

TEST(Connector, CreateNeedsAResolverPool) {
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(EngineOptions{}, nullptr);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(engine.status().message(), HasSubstr("resolver pool"));
}

TEST(Connector, NumericHostsOnlyNeedsANumericPool) {
  ResolverPool names({.threads = 1});
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(NumericOnly(), &names);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(engine.status().message(), HasSubstr("numeric_hosts_only"));
}

}  // namespace
}  // namespace sockagent::testing
