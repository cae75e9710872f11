// Resolver tests against the real libc. This machine's /etc/hosts maps
// localhost to 127.0.0.1 only and its DNS server answers "not found" for
// everything: most cases below are answered by /etc/hosts, /etc/services or
// numeric parsing. The few that reach DNS (marked) each make one lookup.
#include "agent/resolver.h"

#include <netinet/in.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sockagent {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Each;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr absl::Duration kWait = absl::Seconds(20);

ResolveQuery Numeric(std::string host, std::string service = "") {
  ResolveQuery q;
  q.host = std::move(host);
  q.service = std::move(service);
  q.numeric_host = true;
  return q;
}

ReverseQuery Reverse(std::string address, std::string service = "",
                     bool name_required = false) {
  ReverseQuery q;
  q.address = std::move(address);
  q.service = std::move(service);
  q.name_required = name_required;
  return q;
}

// --- Forward lookups -------------------------------------------------------

TEST(Resolver, LocalhostResolvesTo127001) {
  ResolveQuery q;
  q.host = "localhost";
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries, Each(AllOf(Field(&AddressEntry::address, "127.0.0.1"),
                                   Field(&AddressEntry::family, Family::kIpv4),
                                   Field(&AddressEntry::port, 0))));
}

// glibc: /etc/hosts has no IPv6 line for localhost, so the AAAA question
// goes to DNS (one query), which says not found. EAI_NONAME -> NOT_FOUND,
// not an empty list.
TEST(Resolver, LocalhostAsIpv6IsNotFoundHere) {
  ResolveQuery q;
  q.host = "localhost";
  q.family = Family::kIpv6;
  auto entries = ResolveBlocking(q);
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound)
      << entries.status();
}

TEST(Resolver, NumericIpv4Host) {
  auto entries = ResolveBlocking(Numeric("127.0.0.1"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_THAT(*entries,
              Each(AllOf(Field(&AddressEntry::address, "127.0.0.1"),
                         Field(&AddressEntry::family, Family::kIpv4))));
}

TEST(Resolver, NumericIpv6Loopback) {
  auto entries = ResolveBlocking(Numeric("::1"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries,
              Each(AllOf(Field(&AddressEntry::address, "::1"),
                         Field(&AddressEntry::family, Family::kIpv6))));
}

TEST(Resolver, NumericIpv6DocumentationAddress) {
  auto entries = ResolveBlocking(Numeric("2001:db8::1", "443"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries, Each(AllOf(Field(&AddressEntry::address, "2001:db8::1"),
                                   Field(&AddressEntry::family, Family::kIpv6),
                                   Field(&AddressEntry::port, 443))));
}

TEST(Resolver, NumericIpv6KeepsScope) {
  auto entries = ResolveBlocking(Numeric("fe80::1%lo"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_EQ(entries->front().address, "fe80::1%lo");
}

TEST(Resolver, NumericHostWithNameIsNotFound) {
  auto entries = ResolveBlocking(Numeric("localhost"));
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound)
      << entries.status();
  EXPECT_THAT(entries.status().message(), HasSubstr("\"localhost\""));
}

TEST(Resolver, Ipv6AddressWithIpv4FamilyIsNotFound) {
  ResolveQuery q = Numeric("::1");
  q.family = Family::kIpv4;
  auto entries = ResolveBlocking(q);
  // EAI_ADDRFAMILY.
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound)
      << entries.status();
}

TEST(Resolver, WwwServiceIsPort80) {
  auto entries = ResolveBlocking(Numeric("127.0.0.1", "www"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries, Each(Field(&AddressEntry::port, 80)));
}

TEST(Resolver, SshServiceIsPort22) {
  auto entries = ResolveBlocking(Numeric("127.0.0.1", "ssh"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries, Each(Field(&AddressEntry::port, 22)));
}

TEST(Resolver, DecimalServiceIsThatPort) {
  ResolveQuery q = Numeric("127.0.0.1", "8080");
  q.numeric_service = true;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries, Each(Field(&AddressEntry::port, 8080)));
}

TEST(Resolver, NumericServiceRejectsServiceName) {
  ResolveQuery q = Numeric("127.0.0.1", "www");
  q.numeric_service = true;
  EXPECT_EQ(ResolveBlocking(q).status().code(), absl::StatusCode::kNotFound);
}

TEST(Resolver, UnknownServiceIsNotFound) {
  auto entries =
      ResolveBlocking(Numeric("127.0.0.1", "no-such-service-sockagent"));
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound)
      << entries.status();
  EXPECT_THAT(entries.status().message(),
              HasSubstr("service \"no-such-service-sockagent\""));
}

TEST(Resolver, StreamTypeGivesOnlyTcpEntries) {
  ResolveQuery q = Numeric("127.0.0.1", "80");
  q.socket_type = SocketType::kStream;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries,
              Each(AllOf(Field(&AddressEntry::socket_type, SocketType::kStream),
                         Field(&AddressEntry::protocol, IPPROTO_TCP),
                         Field(&AddressEntry::protocol_name, "tcp"))));
}

TEST(Resolver, DgramTypeGivesOnlyUdpEntries) {
  ResolveQuery q = Numeric("127.0.0.1", "53");
  q.socket_type = SocketType::kDgram;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries,
              Each(AllOf(Field(&AddressEntry::socket_type, SocketType::kDgram),
                         Field(&AddressEntry::protocol, IPPROTO_UDP),
                         Field(&AddressEntry::protocol_name, "udp"))));
}

TEST(Resolver, UnspecifiedTypeListsStreamDgramAndRaw) {
  auto entries = ResolveBlocking(Numeric("127.0.0.1"));
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_THAT(*entries, Contains(Field(&AddressEntry::protocol_name, "tcp")));
  EXPECT_THAT(*entries, Contains(Field(&AddressEntry::protocol_name, "udp")));
  EXPECT_THAT(*entries, Contains(AllOf(
                            Field(&AddressEntry::socket_type, SocketType::kRaw),
                            Field(&AddressEntry::protocol_name, "raw"))));
}

TEST(Resolver, CanonicalNameIsOnFirstEntry) {
  ResolveQuery q;
  q.host = "localhost";
  q.canonical_name = true;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_EQ(entries->front().canonical_name, "localhost");
}

TEST(Resolver, PassiveWithEmptyHostGivesWildcards) {
  ResolveQuery q;
  q.service = "8080";
  q.passive = true;
  q.socket_type = SocketType::kStream;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_THAT(*entries, Contains(AllOf(Field(&AddressEntry::address, "0.0.0.0"),
                                       Field(&AddressEntry::port, 8080))));
  EXPECT_THAT(*entries, Contains(AllOf(Field(&AddressEntry::address, "::"),
                                       Field(&AddressEntry::port, 8080))));
}

TEST(Resolver, FamilyFilterGivesOnlyThatFamily) {
  ResolveQuery q;
  q.service = "8080";
  q.passive = true;
  q.family = Family::kIpv6;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_THAT(*entries, Not(SizeIs(0)));
  EXPECT_THAT(*entries, Each(AllOf(Field(&AddressEntry::family, Family::kIpv6),
                                   Field(&AddressEntry::address, "::"))));
}

TEST(Resolver, NonPassiveEmptyHostGivesLoopback) {
  ResolveQuery q;
  q.service = "8080";
  q.family = Family::kIpv4;
  auto entries = ResolveBlocking(q);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_THAT(*entries, Each(Field(&AddressEntry::address, "127.0.0.1")));
}

// The one forward DNS query of this file.
TEST(Resolver, InvalidDomainIsNotFoundAndSaysWhat) {
  ResolveQuery q;
  q.host = "sockagent-test.invalid";
  q.service = "www";
  auto entries = ResolveBlocking(q);
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound)
      << entries.status();
  EXPECT_THAT(
      entries.status().message(),
      HasSubstr("resolve \"sockagent-test.invalid\" service \"www\": "));
}

TEST(Resolver, EmptyHostAndServiceIsInvalid) {
  EXPECT_EQ(ResolveBlocking(ResolveQuery{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Resolver, TooLongHostIsInvalidAndNamesTheLimit) {
  ResolveQuery q = Numeric(std::string(kMaxResolveNameBytes + 1, 'a'));
  auto entries = ResolveBlocking(q);
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(entries.status().message(), HasSubstr("1025"));
}

TEST(Resolver, HostOfExactlyTheLimitReachesLibc) {
  // Numeric, so libc answers without a lookup: not an address -> NOT_FOUND.
  ResolveQuery q = Numeric(std::string(kMaxResolveNameBytes, 'a'));
  EXPECT_EQ(ResolveBlocking(q).status().code(), absl::StatusCode::kNotFound);
}

TEST(Resolver, TooLongServiceIsInvalid) {
  ResolveQuery q = Numeric("127.0.0.1", std::string(2000, '1'));
  EXPECT_EQ(ResolveBlocking(q).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Resolver, HostWithNulByteIsInvalid) {
  ResolveQuery q = Numeric(std::string("127.0.0.1\0evil", 14));
  auto entries = ResolveBlocking(q);
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(entries.status().message(), HasSubstr("NUL"));
}

TEST(Resolver, UnixFamilyIsInvalid) {
  ResolveQuery q = Numeric("127.0.0.1");
  q.family = Family::kUnix;
  EXPECT_EQ(ResolveBlocking(q).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- Reverse lookups -------------------------------------------------------

TEST(Resolver, ReverseOfLoopbackIsLocalhost) {
  auto result = ReverseResolveBlocking(Reverse("127.0.0.1"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->host, "localhost");
  EXPECT_EQ(result->service, "");
}

TEST(Resolver, ReverseWithPort80NamesHttp) {
  auto result = ReverseResolveBlocking(Reverse("127.0.0.1", "80"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->host, "localhost");
  EXPECT_EQ(result->service, "http");
}

TEST(Resolver, ReverseOfPortWithoutNameIsTheNumber) {
  auto result = ReverseResolveBlocking(Reverse("127.0.0.1", "47999"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->service, "47999");
}

TEST(Resolver, ReverseOfNameIsInvalid) {
  auto result = ReverseResolveBlocking(Reverse("localhost"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Resolver, ReverseOfEmptyAddressIsInvalid) {
  EXPECT_EQ(ReverseResolveBlocking(ReverseQuery{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Resolver, ReverseWithUnknownScopeIsInvalid) {
  auto result = ReverseResolveBlocking(Reverse("fe80::1%nosuchif0"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Resolver, ReverseOfIpv4WithScopeIsInvalid) {
  auto result = ReverseResolveBlocking(Reverse("127.0.0.1%lo"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Resolver, ReverseServiceMustBeADecimalPort) {
  for (const char* service : {"http", "65536", "-1", "+80", " 80", "8O"}) {
    auto result = ReverseResolveBlocking(Reverse("127.0.0.1", service));
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
        << service;
  }
}

// One PTR query to DNS (192.0.2.1 is not in /etc/hosts).
TEST(Resolver, ReverseWithNameRequiredAndNoNameIsNotFound) {
  auto result = ReverseResolveBlocking(Reverse("192.0.2.1", "", true));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound)
      << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("\"192.0.2.1\""));
}

// One PTR query to DNS (::1 is not in /etc/hosts); without name_required
// getnameinfo falls back to the numeric form.
TEST(Resolver, ReverseAcceptsIpv6ScopeName) {
  auto result = ReverseResolveBlocking(Reverse("::1%lo"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->host, HasSubstr("::1"));
}

// --- ResolverPool ------------------------------------------------------------

TEST(ResolverPool, ResolveResultArrivesViaCallback) {
  ResolverPool pool({.threads = 2, .max_queued = 4});
  absl::Notification done;
  absl::StatusOr<std::vector<AddressEntry>> got;
  ASSERT_TRUE(pool.SubmitResolve(Numeric("127.0.0.1", "80"),
                                 absl::InfiniteFuture(), [&](auto result) {
                                   got = std::move(result);
                                   done.Notify();
                                 }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, Each(Field(&AddressEntry::port, 80)));
}

TEST(ResolverPool, ReverseResultArrivesViaCallback) {
  ResolverPool pool({.threads = 1, .max_queued = 4});
  absl::Notification done;
  absl::StatusOr<ReverseResult> got;
  ASSERT_TRUE(pool.SubmitReverse(Reverse("127.0.0.1", "22"),
                                 absl::InfiniteFuture(), [&](auto result) {
                                   got = std::move(result);
                                   done.Notify();
                                 }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->host, "localhost");
  EXPECT_EQ(got->service, "ssh");
}

TEST(ResolverPool, LookupErrorArrivesViaCallback) {
  ResolverPool pool({.threads = 1, .max_queued = 4});
  absl::Notification done;
  absl::Status got;
  ASSERT_TRUE(pool.SubmitResolve(ResolveQuery{}, absl::InfiniteFuture(),
                                 [&](auto result) {
                                   got = result.status();
                                   done.Notify();
                                 }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(got.code(), absl::StatusCode::kInvalidArgument);
}

TEST(ResolverPool, PastDeadlineIsDeadlineExceeded) {
  ResolverPool pool({.threads = 1, .max_queued = 4});
  absl::Notification done;
  absl::Status got;
  ASSERT_TRUE(pool.SubmitResolve(
      Numeric("127.0.0.1"), absl::Now() - absl::Seconds(1), [&](auto result) {
        got = result.status();
        done.Notify();
      }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(got.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ResolverPool, LookupLatencyCountsLookupsButNotRefusedJobs) {
  ResolverPool pool({.threads = 1, .max_queued = 4});
  EXPECT_EQ(pool.LookupLatency().count, 0u);
  absl::Notification looked_up, refused;
  ASSERT_TRUE(pool.SubmitResolve(Numeric("127.0.0.1"), absl::InfiniteFuture(),
                                 [&](auto) { looked_up.Notify(); }));
  ASSERT_TRUE(pool.SubmitResolve(Numeric("127.0.0.1"),
                                 absl::Now() - absl::Seconds(1),
                                 [&](auto) { refused.Notify(); }));
  ASSERT_TRUE(looked_up.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(refused.WaitForNotificationWithTimeout(kWait));
  // Counted right after the callback returns, on the pool's thread; the
  // refused job ran after it on the same thread, so the count is final.
  const ResolverPool::Latency l = pool.LookupLatency();
  EXPECT_EQ(l.count, 1u);
  uint64_t in_buckets = 0;
  for (uint64_t b : l.buckets) in_buckets += b;
  EXPECT_EQ(in_buckets, 1u);
  EXPECT_GE(l.sum_seconds, 0.0);
  EXPECT_LT(l.sum_seconds, absl::ToDoubleSeconds(kWait));
}

// Occupies the pool's only thread until `release` is notified.
void BlockOnlyThread(ResolverPool& pool, absl::Notification& started,
                     absl::Notification& release) {
  ASSERT_TRUE(pool.SubmitResolve(
      Numeric("127.0.0.1"), absl::InfiniteFuture(), [&](auto) {
        started.Notify();
        release.WaitForNotificationWithTimeout(absl::Seconds(60));
      }));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kWait));
}

TEST(ResolverPool, FullQueueRefusesWithoutCallingBack) {
  ResolverPool pool({.threads = 1, .max_queued = 1});
  absl::Notification started, release;
  BlockOnlyThread(pool, started, release);

  absl::Notification queued_done;
  ASSERT_TRUE(pool.SubmitReverse(Reverse("127.0.0.1"), absl::InfiniteFuture(),
                                 [&](auto) { queued_done.Notify(); }));
  std::atomic<bool> refused_called = false;
  EXPECT_FALSE(pool.SubmitResolve(Numeric("127.0.0.1"), absl::InfiniteFuture(),
                                  [&](auto) { refused_called = true; }));

  release.Notify();
  ASSERT_TRUE(queued_done.WaitForNotificationWithTimeout(kWait));
  EXPECT_FALSE(refused_called);
  // Room again once the queue drained.
  absl::Notification later_done;
  EXPECT_TRUE(pool.SubmitResolve(Numeric("127.0.0.1"), absl::InfiniteFuture(),
                                 [&](auto) { later_done.Notify(); }));
  EXPECT_TRUE(later_done.WaitForNotificationWithTimeout(kWait));
}

TEST(ResolverPool, DestructorCancelsQueuedJobs) {
  auto pool = std::make_unique<ResolverPool>(
      ResolverPool::Options{.threads = 1, .max_queued = 4});
  absl::Notification started, release;
  BlockOnlyThread(*pool, started, release);

  absl::Mutex mu;
  std::vector<absl::StatusCode> codes;
  absl::Notification both_cancelled;
  auto record = [&](absl::Status status) {
    absl::MutexLock lock(&mu);
    codes.push_back(status.code());
    if (codes.size() == 2) both_cancelled.Notify();
  };
  ASSERT_TRUE(pool->SubmitResolve(Numeric("127.0.0.1"), absl::InfiniteFuture(),
                                  [&](auto r) { record(r.status()); }));
  ASSERT_TRUE(pool->SubmitReverse(Reverse("127.0.0.1"), absl::InfiniteFuture(),
                                  [&](auto r) { record(r.status()); }));

  // The destructor cancels the queued jobs first, then waits for the running
  // one, which we release only after seeing both cancellations.
  std::thread destroyer([&] { pool.reset(); });
  const bool cancelled = both_cancelled.WaitForNotificationWithTimeout(kWait);
  release.Notify();
  destroyer.join();
  ASSERT_TRUE(cancelled);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(codes, Each(absl::StatusCode::kCancelled));
}

TEST(ResolverPool, BoundedShutdownWaitLeavesAHangingLookupBehind) {
  // A job that hangs (as getaddrinfo does against a dead DNS server) holds
  // the destructor at most shutdown_wait; the job still finishes later.
  struct Hang {
    absl::Notification started, release, finished;
  };
  auto hang = std::make_shared<Hang>();
  auto pool = std::make_unique<ResolverPool>(ResolverPool::Options{
      .threads = 1, .max_queued = 1, .shutdown_wait = absl::Milliseconds(50)});
  ASSERT_TRUE(pool->SubmitResolve(Numeric("127.0.0.1"), absl::InfiniteFuture(),
                                  [hang](auto) {
                                    hang->started.Notify();
                                    hang->release.WaitForNotification();
                                    hang->finished.Notify();
                                  }));
  ASSERT_TRUE(hang->started.WaitForNotificationWithTimeout(kWait));
  const absl::Time start = absl::Now();
  pool.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(hang->finished.HasBeenNotified());
  hang->release.Notify();
  EXPECT_TRUE(hang->finished.WaitForNotificationWithTimeout(kWait));
}

TEST(ResolverPool, ManyJobsEachCallBackOnce) {
  constexpr int kJobs = 64;
  ResolverPool pool({.threads = 4, .max_queued = kJobs});
  absl::Mutex mu;
  int calls = 0;
  int ok = 0;
  absl::Notification all_done;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_TRUE(
        pool.SubmitResolve(Numeric("127.0.0.1", std::to_string(1000 + i)),
                           absl::InfiniteFuture(), [&, i](auto result) {
                             absl::MutexLock lock(&mu);
                             if (result.ok() && !result->empty() &&
                                 result->front().port == 1000 + i) {
                               ++ok;
                             }
                             if (++calls == kJobs) all_done.Notify();
                           }));
  }
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(kWait));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(calls, kJobs);
  EXPECT_EQ(ok, kJobs);
}

}  // namespace
}  // namespace sockagent
