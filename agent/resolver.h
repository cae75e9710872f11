// Name resolution for the agent: getaddrinfo / getnameinfo with their errors
// turned into absl::Status, and a bounded worker pool that runs them.
//
// The libc calls block (a DNS lookup can take seconds), so they must never
// run on a gRPC thread nor on the socket loop: the service submits them to a
// ResolverPool and answers the RPC from the callback.
//
//   ResolverPool pool({.threads = 4, .max_queued = 256});
//   ResolveQuery q{.host = "localhost", .service = "www"};
//   if (!pool.SubmitResolve(q, deadline, [](auto result) { ... })) {
//     // Queue full: answer RESOURCE_EXHAUSTED.
//   }
//
// Threads: ResolveBlocking, ReverseResolveBlocking and NumericHost may be
// called from any thread (they share no state; libc's resolver is
// thread-safe). ResolverPool's Submit* are thread-safe.
//
// Errors (both lookups): INVALID_ARGUMENT for a malformed query (checked
// before libc is called) or a family/socket type/flag libc rejects;
// NOT_FOUND unknown name, service or address family for that name;
// UNAVAILABLE temporary resolver failure; RESOURCE_EXHAUSTED out of memory;
// INTERNAL system error (with strerror); UNKNOWN anything else. Messages say
// what was looked up, e.g.
//   resolve "foo.invalid" service "www": Name or service not known
#ifndef SOCKAGENT_AGENT_RESOLVER_H_
#define SOCKAGENT_AGENT_RESOLVER_H_

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/types.h"

namespace sockagent {

// Longest host or service string accepted (NI_MAXHOST); longer is
// INVALID_ARGUMENT.
inline constexpr size_t kMaxResolveNameBytes = 1025;

// getaddrinfo(host, service, hints). Empty strings are passed as NULL.
struct ResolveQuery {
  std::string host;
  std::string service;
  Family family = Family::kUnspecified;  // kUnix is INVALID_ARGUMENT.
  SocketType socket_type = SocketType::kUnspecified;
  bool canonical_name = false;   // AI_CANONNAME
  bool numeric_host = false;     // AI_NUMERICHOST
  bool numeric_service = false;  // AI_NUMERICSERV
  bool passive = false;          // AI_PASSIVE
  bool address_config = false;   // AI_ADDRCONFIG
};

// One addrinfo entry.
struct AddressEntry {
  Family family = Family::kUnspecified;
  SocketType socket_type = SocketType::kUnspecified;
  int protocol = 0;  // IPPROTO_* as getaddrinfo reports it.
  // "tcp", "udp", "raw" (a SOCK_RAW entry, whose protocol is 0), otherwise
  // the name from the protocols database, "" if unknown.
  std::string protocol_name;
  std::string canonical_name;  // Only on the first entry, with AI_CANONNAME.
  std::string address;         // Numeric, with %scope where present.
  uint16_t port = 0;
};

// Runs getaddrinfo; entries are in getaddrinfo's order. Blocking.
absl::StatusOr<std::vector<AddressEntry>> ResolveBlocking(
    const ResolveQuery& query);

// getnameinfo of a numeric address.
struct ReverseQuery {
  // Numeric IPv4 or IPv6 literal; IPv6 may carry a scope ("fe80::1%eth0",
  // "::1%lo", or a numeric index). Anything else is INVALID_ARGUMENT.
  std::string address;
  // Optional decimal port 0..65535 whose service name is wanted; "" = none.
  std::string service;
  bool name_required = false;  // NI_NAMEREQD: NOT_FOUND if there is no name.
  bool numeric_host = false;   // NI_NUMERICHOST: never look a name up.
};

struct ReverseResult {
  std::string host;     // A name, or the numeric address if none is known.
  std::string service;  // Empty when the query had no service.
};

// Runs getnameinfo. Blocking.
absl::StatusOr<ReverseResult> ReverseResolveBlocking(const ReverseQuery& query);

// Numeric text of an AF_INET/AF_INET6 socket address ("127.0.0.1",
// "fe80::1%eth0"); "" for any other family. Never does a lookup.
std::string NumericHost(const struct sockaddr* address);

// A fixed set of threads running lookups from one bounded FIFO queue.
//
// Every accepted job's callback runs exactly once: on a pool thread with the
// lookup's result, or DEADLINE_EXCEEDED (without a lookup) if the job's
// deadline had passed when a thread took it, or CANCELLED("agent shutting
// down") on the destroying thread if the pool is destroyed before a thread
// took it. Callbacks may call Submit* (it returns false once destruction has
// started) but must not destroy the pool, and must not block waiting for the
// pool's destruction.
class ResolverPool final {
 public:
  struct Options {
    int threads = 4;          // Values below 1 mean 1.
    size_t max_queued = 256;  // Jobs waiting for a thread; values below 1
                              // mean 1. Running jobs do not count.
    // How long the destructor waits for lookups already running in libc
    // (which cannot be interrupted). Past it, their threads are left to
    // finish on their own and their callbacks still run later: only use a
    // finite wait when every callback is safe to run after the pool and its
    // owner are gone (the daemon at exit, whose callbacks hold their state
    // by shared_ptr).
    absl::Duration shutdown_wait = absl::InfiniteDuration();
    // Never look a host name up (AI_NUMERICHOST / NI_NUMERICHOST on every
    // job; service names still come from /etc/services): a name, or a
    // reverse lookup that requires one, is PERMISSION_DENIED "name lookups
    // are disabled (--no-name-lookups)". So a fuzzed or locked-down agent
    // never asks the machine's DNS server anything.
    bool numeric_hosts_only = false;
  };

  // Starts the threads.
  explicit ResolverPool(Options options);

  // Refuses new jobs, calls every queued job's callback with CANCELLED on
  // this thread, then waits for the running lookups (each bounded by libc's
  // resolver timeouts) and their callbacks to finish, at most
  // Options::shutdown_wait.
  ~ResolverPool();

  ResolverPool(const ResolverPool&) = delete;
  ResolverPool& operator=(const ResolverPool&) = delete;

  // Queue a lookup; pass absl::InfiniteFuture() for no deadline. Returns
  // false without calling `done` if the queue is full (the caller answers
  // RESOURCE_EXHAUSTED) or the pool is being destroyed. Thread-safe.
  bool SubmitResolve(
      ResolveQuery query, absl::Time deadline,
      absl::AnyInvocable<void(absl::StatusOr<std::vector<AddressEntry>>)> done);
  bool SubmitReverse(
      ReverseQuery query, absl::Time deadline,
      absl::AnyInvocable<void(absl::StatusOr<ReverseResult>)> done);

  // Options::numeric_hosts_only, for users sharing the pool.
  bool numeric_hosts_only() const { return numeric_hosts_only_; }

  // Jobs waiting for a thread and lookups running now (for metrics). Any
  // thread.
  struct Load {
    size_t queued = 0;
    int running = 0;
  };
  Load CurrentLoad() const;

  // How long lookups took, from a thread taking the job to its result
  // (the callback included: callbacks only hand the result on). Every
  // lookup of the pool counts: Resolve calls and the engine's names. Jobs
  // refused before a lookup (deadline passed, shutdown) do not. Upper
  // bounds in seconds; +Inf is implied.
  static constexpr std::array<double, 10> kLatencyBuckets = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30};
  struct Latency {
    std::array<uint64_t, kLatencyBuckets.size() + 1> buckets{};  // Not
                                                                 // cumulative.
    uint64_t count = 0;
    double sum_seconds = 0;
  };
  // Any thread; relaxed reads, so a lookup ending meanwhile may be in the
  // buckets but not yet in count.
  Latency LookupLatency() const;

 private:
  // A queued job of either kind. Called once: with OkStatus it runs the
  // lookup and reports the result; with an error it reports that error.
  struct Job {
    absl::Time deadline;
    absl::AnyInvocable<void(absl::Status)> run;
  };

  // What the worker threads touch. Shared with them, so a thread still in
  // a lookup when the destructor stops waiting never touches freed memory.
  struct Shared {
    absl::Mutex mu;
    absl::CondVar work_available;
    absl::CondVar idle;  // Signalled when `running` drops to 0.
    std::deque<Job> queue ABSL_GUARDED_BY(mu);
    bool stopping ABSL_GUARDED_BY(mu) = false;
    int running ABSL_GUARDED_BY(mu) = 0;
    // LookupLatency's counts: relaxed atomics, no lock.
    std::array<std::atomic<uint64_t>, kLatencyBuckets.size() + 1> buckets{};
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_ns{0};
  };

  bool Enqueue(Job job);
  static void WorkerLoop(const std::shared_ptr<Shared>& shared);
  static void CountLookup(Shared& shared, absl::Duration took);

  const size_t max_queued_;
  const bool numeric_hosts_only_;
  const absl::Duration shutdown_wait_;
  const std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::vector<std::thread> threads_;  // Written only by ctor and dtor.
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_RESOLVER_H_
