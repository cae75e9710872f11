#include "agent/resolver.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace sockagent {
namespace {

// Names come from remote callers: escape them so a message stays one
// printable line.
std::string Quote(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

std::string SystemErrorText(int error) {
  char buf[256];
  // GNU strerror_r (g++ defines _GNU_SOURCE): returns the text, maybe not in
  // buf.
  return strerror_r(error, buf, sizeof(buf));
}

// Maps a getaddrinfo/getnameinfo result to a status; `what` says what was
// looked up. `saved_errno` is errno right after the call (for EAI_SYSTEM).
absl::Status LookupError(int rc, int saved_errno, absl::string_view what) {
  const std::string message =
      rc == EAI_SYSTEM ? absl::StrCat(what, ": ", SystemErrorText(saved_errno))
                       : absl::StrCat(what, ": ", gai_strerror(rc));
  switch (rc) {
    case EAI_NONAME:
    case EAI_SERVICE:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
      return absl::NotFoundError(message);
    case EAI_AGAIN:
      return absl::UnavailableError(message);
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS:
      return absl::InvalidArgumentError(message);
    case EAI_MEMORY:
      return absl::ResourceExhaustedError(message);
    case EAI_SYSTEM:
      return absl::InternalError(message);
    default:
      return absl::UnknownError(message);
  }
}

// Length and NUL checks shared by every string handed to libc as a C string.
absl::Status CheckCString(absl::string_view context, absl::string_view field,
                          absl::string_view value) {
  if (value.size() > kMaxResolveNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s is %d bytes, longer than the limit of %d bytes",
                        context, field, value.size(), kMaxResolveNameBytes));
  }
  if (value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", field, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ToAddressFamily(Family family) {
  switch (family) {
    case Family::kUnspecified:
      return AF_UNSPEC;
    case Family::kIpv4:
      return AF_INET;
    case Family::kIpv6:
      return AF_INET6;
    case Family::kUnix:
      return absl::InvalidArgumentError(
          "resolve: family UNIX cannot be resolved (only IPv4 and IPv6)");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("resolve: unknown family value ", static_cast<int>(family)));
}

absl::StatusOr<int> ToSockType(SocketType type) {
  switch (type) {
    case SocketType::kUnspecified:
      return 0;
    case SocketType::kStream:
      return SOCK_STREAM;
    case SocketType::kDgram:
      return SOCK_DGRAM;
    case SocketType::kRaw:
      return SOCK_RAW;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "resolve: unknown socket type value ", static_cast<int>(type)));
}

Family FromAddressFamily(int af) {
  switch (af) {
    case AF_INET:
      return Family::kIpv4;
    case AF_INET6:
      return Family::kIpv6;
    case AF_UNIX:
      return Family::kUnix;
    default:
      return Family::kUnspecified;
  }
}

SocketType FromSockType(int type) {
  switch (type) {
    case SOCK_STREAM:
      return SocketType::kStream;
    case SOCK_DGRAM:
      return SocketType::kDgram;
    case SOCK_RAW:
      return SocketType::kRaw;
    default:
      return SocketType::kUnspecified;
  }
}

std::string ProtocolName(int protocol, int sock_type) {
  switch (protocol) {
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    case IPPROTO_RAW:
      return "raw";
    default:
      break;
  }
  // getaddrinfo's SOCK_RAW entries carry protocol 0 ("ip" in the database),
  // which says less than the socket type does.
  if (protocol == 0 && sock_type == SOCK_RAW) return "raw";
  struct protoent entry;
  struct protoent* found = nullptr;
  char buf[1024];
  if (getprotobynumber_r(protocol, &entry, buf, sizeof(buf), &found) == 0 &&
      found != nullptr) {
    return found->p_name;
  }
  return "";
}

uint16_t PortOf(const struct sockaddr* address) {
  if (address == nullptr) return 0;
  if (address->sa_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(address)->sin_port);
  }
  if (address->sa_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(address)->sin6_port);
  }
  return 0;
}

std::string DescribeResolve(const ResolveQuery& query) {
  std::string out = "resolve";
  if (!query.host.empty()) absl::StrAppend(&out, " ", Quote(query.host));
  if (!query.service.empty()) {
    absl::StrAppend(&out, " service ", Quote(query.service));
  }
  return out;
}

absl::Status ValidateResolve(const ResolveQuery& query) {
  if (query.host.empty() && query.service.empty()) {
    return absl::InvalidArgumentError(
        "resolve: host and service are both empty");
  }
  if (absl::Status s = CheckCString("resolve", "host", query.host); !s.ok()) {
    return s;
  }
  return CheckCString("resolve", "service", query.service);
}

// A parsed numeric address for getnameinfo.
struct NumericAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// Parses "1.2.3.4", "::1", "fe80::1%eth0" or "fe80::1%2" with inet_pton (no
// lookups), with `port` in network order filled in.
absl::StatusOr<NumericAddress> ParseNumericAddress(absl::string_view context,
                                                   const std::string& text,
                                                   uint16_t port) {
  NumericAddress out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    return out;
  }
  out.storage = {};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  const size_t percent = text.find('%');
  const std::string literal = text.substr(0, percent);
  if (inet_pton(AF_INET6, literal.c_str(), &v6->sin6_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(context,
                     ": not a numeric IPv4 or IPv6 address (a reverse lookup "
                     "takes an address, not a name)"));
  }
  if (percent != std::string::npos) {
    const std::string scope = text.substr(percent + 1);
    uint32_t index = if_nametoindex(scope.c_str());
    if (index == 0 &&
        (scope.empty() ||
         !std::all_of(scope.begin(), scope.end(), absl::ascii_isdigit) ||
         !absl::SimpleAtoi(scope, &index))) {
      return absl::InvalidArgumentError(absl::StrCat(
          context, ": scope ", Quote(scope), " is not an interface here"));
    }
    v6->sin6_scope_id = index;
  }
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons(port);
  out.length = sizeof(sockaddr_in6);
  return out;
}

// Strict decimal 0..65535 (no sign, no spaces).
absl::StatusOr<uint16_t> ParsePort(absl::string_view context,
                                   absl::string_view text) {
  uint32_t value = 0;
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(text, &value) || value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        context, ": service ", Quote(text), " is not a decimal port 0..65535"));
  }
  return static_cast<uint16_t>(value);
}

// Wraps a lookup and its callback into a pool job (one job type serves
// both kinds of lookup).
template <typename Query, typename Result>
absl::AnyInvocable<void(absl::Status)> LookupJob(
    Query query, absl::StatusOr<Result> (*lookup)(const Query&),
    absl::AnyInvocable<void(absl::StatusOr<Result>)> done) {
  return [query = std::move(query), lookup,
          done = std::move(done)](absl::Status admitted) mutable {
    if (!admitted.ok()) {
      done(std::move(admitted));
      return;
    }
    done(lookup(query));
  };
}

}  // namespace

std::string NumericHost(const struct sockaddr* address) {
  if (address == nullptr) return "";
  socklen_t length;
  if (address->sa_family == AF_INET) {
    length = sizeof(sockaddr_in);
  } else if (address->sa_family == AF_INET6) {
    length = sizeof(sockaddr_in6);
  } else {
    return "";
  }
  char host[NI_MAXHOST];
  if (getnameinfo(address, length, host, sizeof(host), nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return "";
  }
  return host;
}

absl::StatusOr<std::vector<AddressEntry>> ResolveBlocking(
    const ResolveQuery& query) {
  if (absl::Status s = ValidateResolve(query); !s.ok()) return s;
  absl::StatusOr<int> family = ToAddressFamily(query.family);
  if (!family.ok()) return family.status();
  absl::StatusOr<int> sock_type = ToSockType(query.socket_type);
  if (!sock_type.ok()) return sock_type.status();

  struct addrinfo hints = {};
  hints.ai_family = *family;
  hints.ai_socktype = *sock_type;
  hints.ai_flags = (query.canonical_name ? AI_CANONNAME : 0) |
                   (query.numeric_host ? AI_NUMERICHOST : 0) |
                   (query.numeric_service ? AI_NUMERICSERV : 0) |
                   (query.passive ? AI_PASSIVE : 0) |
                   (query.address_config ? AI_ADDRCONFIG : 0);
  struct addrinfo* list = nullptr;
  errno = 0;
  const int rc = getaddrinfo(
      query.host.empty() ? nullptr : query.host.c_str(),
      query.service.empty() ? nullptr : query.service.c_str(), &hints, &list);
  const int saved_errno = errno;
  if (rc != 0) return LookupError(rc, saved_errno, DescribeResolve(query));
  absl::Cleanup free_list = [list] { freeaddrinfo(list); };

  std::vector<AddressEntry> entries;
  for (const struct addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    AddressEntry& entry = entries.emplace_back();
    entry.family = FromAddressFamily(ai->ai_family);
    entry.socket_type = FromSockType(ai->ai_socktype);
    entry.protocol = ai->ai_protocol;
    entry.protocol_name = ProtocolName(ai->ai_protocol, ai->ai_socktype);
    if (ai->ai_canonname != nullptr) entry.canonical_name = ai->ai_canonname;
    entry.address = NumericHost(ai->ai_addr);
    entry.port = PortOf(ai->ai_addr);
  }
  return entries;
}

absl::StatusOr<ReverseResult> ReverseResolveBlocking(
    const ReverseQuery& query) {
  if (query.address.empty()) {
    return absl::InvalidArgumentError("reverse resolve: address is empty");
  }
  if (absl::Status s =
          CheckCString("reverse resolve", "address", query.address);
      !s.ok()) {
    return s;
  }
  std::string what = absl::StrCat("reverse resolve ", Quote(query.address));
  uint16_t port = 0;
  if (!query.service.empty()) {
    absl::StatusOr<uint16_t> parsed = ParsePort(what, query.service);
    if (!parsed.ok()) return parsed.status();
    port = *parsed;
    absl::StrAppend(&what, " port ", port);
  }
  absl::StatusOr<NumericAddress> address =
      ParseNumericAddress(what, query.address, port);
  if (!address.ok()) return address.status();

  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  const bool want_service = !query.service.empty();
  errno = 0;
  const int rc = getnameinfo(
      reinterpret_cast<const sockaddr*>(&address->storage), address->length,
      host, sizeof(host), want_service ? service : nullptr,
      want_service ? sizeof(service) : 0,
      (query.name_required ? NI_NAMEREQD : 0) |
          (query.numeric_host ? NI_NUMERICHOST : 0));
  const int saved_errno = errno;
  if (rc != 0) return LookupError(rc, saved_errno, what);
  ReverseResult result;
  result.host = host;
  if (want_service) result.service = service;
  return result;
}

namespace {

absl::Status NameLookupsDisabled(absl::string_view what) {
  return absl::PermissionDeniedError(absl::StrCat(
      "resolve ", Quote(what),
      ": name lookups are disabled on this agent (--no-name-lookups); use a "
      "numeric address"));
}

}  // namespace

ResolverPool::ResolverPool(Options options)
    : max_queued_(std::max<size_t>(1, options.max_queued)),
      numeric_hosts_only_(options.numeric_hosts_only),
      shutdown_wait_(options.shutdown_wait) {
  const int threads = std::max(1, options.threads);
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([shared = shared_] {
      pthread_setname_np(pthread_self(), "sa-resolver");
      WorkerLoop(shared);
    });
  }
}

ResolverPool::~ResolverPool() {
  std::deque<Job> not_started;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stopping = true;
    not_started.swap(shared_->queue);
  }
  shared_->work_available.SignalAll();
  for (Job& job : not_started) {
    job.run(absl::CancelledError("agent shutting down"));
  }
  bool idle;
  {
    absl::MutexLock lock(&shared_->mu);
    const absl::Time until = absl::Now() + shutdown_wait_;
    while (shared_->running > 0 &&
           !shared_->idle.WaitWithDeadline(&shared_->mu, until)) {
    }
    idle = shared_->running == 0;
  }
  for (std::thread& thread : threads_) {
    // Idle threads exit at once; busy ones are left to finish their lookup
    // holding their own reference to the shared state.
    if (idle) {
      thread.join();
    } else {
      thread.detach();
    }
  }
}

bool ResolverPool::SubmitResolve(
    ResolveQuery query, absl::Time deadline,
    absl::AnyInvocable<void(absl::StatusOr<std::vector<AddressEntry>>)> done) {
  if (numeric_hosts_only_ && !query.host.empty()) {
    // getaddrinfo with AI_NUMERICHOST says "Name or service not known" for
    // a name: say why instead.
    query.numeric_host = true;
    done = [host = query.host, done = std::move(done)](
               absl::StatusOr<std::vector<AddressEntry>> result) mutable {
      if (result.status().code() == absl::StatusCode::kNotFound) {
        result = NameLookupsDisabled(host);
      }
      done(std::move(result));
    };
  }
  return Enqueue(Job{deadline, LookupJob(std::move(query), &ResolveBlocking,
                                         std::move(done))});
}

bool ResolverPool::SubmitReverse(
    ReverseQuery query, absl::Time deadline,
    absl::AnyInvocable<void(absl::StatusOr<ReverseResult>)> done) {
  if (numeric_hosts_only_) {
    query.numeric_host = true;
    if (query.name_required) {
      done = [address = query.address, done = std::move(done)](
                 absl::StatusOr<ReverseResult> result) mutable {
        if (!result.ok() &&
            result.status().code() != absl::StatusCode::kInvalidArgument) {
          result = NameLookupsDisabled(address);
        }
        done(std::move(result));
      };
    }
  }
  return Enqueue(Job{
      deadline,
      LookupJob(std::move(query), &ReverseResolveBlocking, std::move(done))});
}

ResolverPool::Load ResolverPool::CurrentLoad() const {
  absl::MutexLock lock(&shared_->mu);
  return Load{shared_->queue.size(), shared_->running};
}

ResolverPool::Latency ResolverPool::LookupLatency() const {
  Latency l;
  for (size_t i = 0; i < l.buckets.size(); ++i) {
    l.buckets[i] = shared_->buckets[i].load(std::memory_order_relaxed);
  }
  l.count = shared_->count.load(std::memory_order_relaxed);
  l.sum_seconds =
      static_cast<double>(shared_->sum_ns.load(std::memory_order_relaxed)) /
      1e9;
  return l;
}

void ResolverPool::CountLookup(Shared& shared, absl::Duration took) {
  const double seconds = absl::ToDoubleSeconds(took);
  size_t b = 0;
  while (b < kLatencyBuckets.size() && seconds > kLatencyBuckets[b]) ++b;
  shared.buckets[b].fetch_add(1, std::memory_order_relaxed);
  const int64_t ns = absl::ToInt64Nanoseconds(took);
  shared.sum_ns.fetch_add(ns > 0 ? static_cast<uint64_t>(ns) : 0,
                          std::memory_order_relaxed);
  shared.count.fetch_add(1, std::memory_order_relaxed);
}

bool ResolverPool::Enqueue(Job job) {
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->stopping || shared_->queue.size() >= max_queued_) {
      return false;
    }
    shared_->queue.push_back(std::move(job));
  }
  shared_->work_available.Signal();
  return true;
}

void ResolverPool::WorkerLoop(const std::shared_ptr<Shared>& shared) {
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&shared->mu);
      while (shared->queue.empty() && !shared->stopping) {
        shared->work_available.Wait(&shared->mu);
      }
      // Once stopping, the destructor has taken the queue: nothing is left.
      if (shared->queue.empty()) return;
      job = std::move(shared->queue.front());
      shared->queue.pop_front();
      ++shared->running;
    }
    absl::Status admitted = absl::OkStatus();
    if (absl::Now() >= job.deadline) {
      admitted = absl::DeadlineExceededError(
          "resolve: deadline passed before a resolver thread was free");
    }
    const bool lookup = admitted.ok();
    const absl::Time started = absl::Now();
    job.run(std::move(admitted));
    if (lookup) CountLookup(*shared, absl::Now() - started);
    job = Job();  // Release the callback's captures before counting down.
    absl::MutexLock lock(&shared->mu);
    if (--shared->running == 0) shared->idle.SignalAll();
  }
}

}  // namespace sockagent
