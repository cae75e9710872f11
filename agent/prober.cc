#include "agent/prober.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/net_error.h"
#include "agent/quote.h"

namespace sockagent {
namespace {

constexpr absl::Duration kDefaultTimeout = absl::Seconds(2);
constexpr size_t kDefaultConcurrency = 64;
// sun_path holds 108 bytes, one of them the terminating NUL.
constexpr size_t kMaxUnixPathBytes = 107;

using Tcp = asio::ip::tcp;
using Udp = asio::ip::udp;
using Local = asio::local::stream_protocol;

std::string Field(size_t i, absl::string_view name) {
  return absl::StrCat("targets[", i, "].", name);
}

absl::Status CheckTarget(const ProbeTarget& t, size_t i,
                         const ProberOptions& o) {
  const Endpoint& e = t.endpoint;
  if (t.transport == Transport::kUnix) {
    if (e.unix_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Field(i, "endpoint.unix_path"), ": a UNIX probe needs a path"));
    }
    if (e.unix_path.size() > kMaxUnixPathBytes ||
        e.unix_path.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(Field(i, "endpoint.unix_path"), ": at most ",
                       kMaxUnixPathBytes, " bytes and no NUL"));
    }
  } else {
    if (e.host.empty() || e.host.size() > kMaxResolveNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(Field(i, "endpoint.host"), ": a host of 1 to ",
                       kMaxResolveNameBytes, " bytes is needed"));
    }
    uint32_t port = 0;
    if (e.port.empty() || e.port.size() > kMaxResolveNameBytes ||
        (absl::SimpleAtoi(e.port, &port) && (port == 0 || port > 65535))) {
      return absl::InvalidArgumentError(
          absl::StrCat(Field(i, "endpoint.port"), ": ", QuoteInput(e.port),
                       " is not a port (1-65535) or a service name"));
    }
  }
  if (t.payload.size() > o.max_payload_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(i, "payload"), ": ", t.payload.size(),
                     " bytes; at most ", o.max_payload_bytes));
  }
  if (t.payload.empty() && t.transport == Transport::kUdp) {
    return absl::InvalidArgumentError(absl::StrCat(
        Field(i, "payload"),
        ": a UDP probe needs a payload (UDP has no handshake to observe)"));
  }
  if (t.payload.empty() && t.expect_echo) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(i, "expect_echo"), ": needs a payload to echo"));
  }
  return absl::OkStatus();
}

// The class of a socket error.
ProbeClass ClassOf(const std::error_code& ec) {
  // A UNIX path with no socket: nobody listens there.
  const bool no_such_file =
      ec.category() == asio::error::get_system_category() &&
      ec.value() == ENOENT;
  if (ec == asio::error::connection_refused || no_such_file) {
    return ProbeClass::kRefused;
  }
  if (ec == asio::error::host_unreachable ||
      ec == asio::error::network_unreachable ||
      ec == asio::error::network_down) {
    return ProbeClass::kUnreachable;
  }
  if (ec == asio::error::timed_out) return ProbeClass::kTimeout;
  return ProbeClass::kError;
}

// The class of a failed name lookup (agent/resolver.h's codes).
ProbeClass ClassOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kPermissionDenied:  // --no-name-lookups.
      return ProbeClass::kDns;
    case absl::StatusCode::kDeadlineExceeded:
      return ProbeClass::kTimeout;
    default:
      return ProbeClass::kError;
  }
}

}  // namespace

const char* ProbeClassName(ProbeClass c) {
  switch (c) {
    case ProbeClass::kOk:
      return "OK";
    case ProbeClass::kRefused:
      return "REFUSED";
    case ProbeClass::kTimeout:
      return "TIMEOUT";
    case ProbeClass::kUnreachable:
      return "UNREACHABLE";
    case ProbeClass::kDns:
      return "DNS";
    case ProbeClass::kError:
      break;
  }
  return "ERROR";
}

struct Prober::Alive {
  absl::Mutex mu;
  asio::io_context* io ABSL_GUARDED_BY(mu) = nullptr;
};

class ProbeRun;

struct Prober::Call {
  ProbeSpec spec;
  Done<absl::StatusOr<ProbeReport>> done;
  ProbeReport report;
  absl::Time started;
  size_t next = 0;  // The next target to start.
  size_t running = 0;
  size_t finished = 0;
  bool ended = false;
  bool filling = false;                         // Inside Prober::Fill.
  std::vector<std::shared_ptr<ProbeRun>> live;  // By target; null when done.

  // A call dropped unrun (the loop stopped before it began) still answers.
  ~Call() {
    if (!ended && done) done(absl::UnavailableError("agent shutting down"));
  }
};

// One probe: resolve, check, connect, send, read the echo. Loop thread only.
class ProbeRun : public std::enable_shared_from_this<ProbeRun> {
 public:
  using EndFn = absl::AnyInvocable<void(size_t, ProbeOutcome)>;

  ProbeRun(asio::io_context& io, const ProberOptions& options,
           std::shared_ptr<Prober::Alive> alive, const ProbeTarget& target,
           size_t index, absl::Duration timeout, EndFn on_end)
      : io_(io),
        options_(options),
        alive_(std::move(alive)),
        target_(target),
        index_(index),
        timeout_(timeout),
        timer_(io),
        on_end_(std::move(on_end)) {}

  void Begin(absl::Time deadline) {
    start_ = absl::Now();
    const absl::Time until = std::min(start_ + timeout_, deadline);
    timer_.expires_after(absl::ToChronoNanoseconds(
        std::max(until - start_, absl::ZeroDuration())));
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (!ec) self->TimedOut();
    });
    if (target_.transport == Transport::kUnix) return ConnectUnix();
    Resolve();
  }

  // Ends without reporting (the call was cancelled or is shutting down).
  void Abandon() {
    ended_ = true;
    Close();
  }

 private:
  void ConnectUnix() {
    const std::string& path = target_.endpoint.unix_path;
    outcome_.remote = absl::StrCat("unix:", path);
    if (options_.policy != nullptr) {
      if (absl::Status s = options_.policy->CheckUnixPath("connect", path);
          !s.ok()) {
        return End(ProbeClass::kError, std::string(s.message()));
      }
    }
    std::string native = path;
    if (!native.empty() && native[0] == '@') native[0] = '\0';
    unix_.emplace(io_);
    stage_ = "connect";
    connect_start_ = absl::Now();
    unix_->async_connect(
        Local::endpoint(native),
        [self = shared_from_this()](const std::error_code& ec) {
          if (self->ended_) return;
          if (ec) return self->Failed("connect", ec);
          self->Connected();
        });
  }

  void Resolve() {
    const Endpoint& e = target_.endpoint;
    outcome_.remote = e.host.find(':') != std::string::npos
                          ? absl::StrCat("[", e.host, "]:", e.port)
                          : absl::StrCat(e.host, ":", e.port);
    std::error_code ec;
    const asio::ip::address ip = asio::ip::make_address(e.host, ec);
    uint32_t port = 0;
    if (!ec && absl::SimpleAtoi(e.port, &port)) {
      return Connect({{ip, static_cast<uint16_t>(port)}});
    }
    if (options_.resolver == nullptr) {
      return End(ProbeClass::kDns,
                 absl::StrCat("resolve ", outcome_.remote,
                              ": name lookups are not available"));
    }
    stage_ = "resolve";
    ResolveQuery query{.host = e.host, .service = e.port};
    query.socket_type = target_.transport == Transport::kUdp
                            ? SocketType::kDgram
                            : SocketType::kStream;
    std::weak_ptr<ProbeRun> weak = weak_from_this();
    auto alive = alive_;
    const bool queued = options_.resolver->SubmitResolve(
        query, start_ + timeout_,
        [weak,
         alive](absl::StatusOr<std::vector<AddressEntry>> result) mutable {
          absl::MutexLock lock(&alive->mu);
          if (alive->io == nullptr) return;
          asio::post(*alive->io, [weak, result = std::move(result)]() mutable {
            if (auto self = weak.lock()) self->Resolved(std::move(result));
          });
        });
    if (!queued) {
      End(ProbeClass::kError, absl::StrCat("resolve ", outcome_.remote,
                                           ": the resolver's queue is full"));
    }
  }

  void Resolved(absl::StatusOr<std::vector<AddressEntry>> result) {
    if (ended_) return;
    if (!result.ok()) {
      return End(ClassOf(result.status()),
                 std::string(result.status().message()));
    }
    std::vector<asio::ip::basic_endpoint<Tcp>> addresses;
    for (const AddressEntry& entry : *result) {
      std::error_code ec;
      const asio::ip::address ip = asio::ip::make_address(entry.address, ec);
      if (!ec) addresses.emplace_back(ip, entry.port);
    }
    if (addresses.empty()) {
      return End(ProbeClass::kDns,
                 absl::StrCat("resolve ", outcome_.remote, ": no address"));
    }
    Connect(std::move(addresses));
  }

  void Connect(std::vector<asio::ip::basic_endpoint<Tcp>> addresses) {
    if (options_.policy != nullptr) {
      std::vector<asio::ip::basic_endpoint<Tcp>> allowed;
      absl::Status first;
      for (const auto& a : addresses) {
        absl::Status s = options_.policy->CheckDestination(
            a.address().to_string(), a.port());
        if (s.ok()) {
          allowed.push_back(a);
        } else if (first.ok()) {
          first = s;
        }
      }
      if (allowed.empty()) {
        return End(ProbeClass::kError, absl::StrCat("connect ", outcome_.remote,
                                                    ": ", first.message()));
      }
      addresses = std::move(allowed);
    }
    addresses_ = std::move(addresses);
    attempt_ = 0;
    ConnectNext();
  }

  void ConnectNext() {
    const auto& a = addresses_[attempt_];
    outcome_.remote =
        a.address().is_v6()
            ? absl::StrCat("[", a.address().to_string(), "]:", a.port())
            : absl::StrCat(a.address().to_string(), ":", a.port());
    stage_ = "connect";
    connect_start_ = absl::Now();
    std::error_code ec;
    if (target_.transport == Transport::kUdp) {
      udp_.emplace(io_);
      udp_->open(a.address().is_v6() ? Udp::v6() : Udp::v4(), ec);
      // connect(2) on UDP only fixes the peer (and lets ICMP errors back).
      if (!ec) udp_->connect(Udp::endpoint(a.address(), a.port()), ec);
      if (ec) return Failed("connect", ec);
      return Connected();
    }
    tcp_.emplace(io_);
    tcp_->async_connect(
        Tcp::endpoint(a.address(), a.port()),
        [self = shared_from_this()](const std::error_code& ec) {
          if (self->ended_) return;
          if (ec && self->attempt_ + 1 < self->addresses_.size()) {
            ++self->attempt_;
            self->tcp_.reset();
            return self->ConnectNext();
          }
          if (ec) return self->Failed("connect", ec);
          self->Connected();
        });
  }

  void Connected() {
    if (target_.transport != Transport::kUdp) {
      outcome_.connect_time = absl::Now() - connect_start_;
    }
    if (target_.payload.empty()) return End(ProbeClass::kOk, "");
    stage_ = "send";
    send_start_ = absl::Now();
    auto sent = [self = shared_from_this()](const std::error_code& ec,
                                            size_t n) {
      if (self->ended_) return;
      self->outcome_.bytes_sent += n;
      if (ec) return self->Failed("send", ec);
      if (!self->target_.expect_echo) return self->End(ProbeClass::kOk, "");
      self->ReadEcho();
    };
    if (udp_) return udp_->async_send(asio::buffer(target_.payload), sent);
    if (tcp_)
      return asio::async_write(*tcp_, asio::buffer(target_.payload), sent);
    asio::async_write(*unix_, asio::buffer(target_.payload), sent);
  }

  void ReadEcho() {
    stage_ = "echo";
    // One byte more for UDP: a longer datagram is not an echo.
    echo_.resize(target_.payload.size() +
                 (target_.transport == Transport::kUdp ? 1 : 0));
    auto got = [self = shared_from_this()](const std::error_code& ec,
                                           size_t n) {
      if (self->ended_) return;
      self->outcome_.bytes_received += n;
      if (ec && ec != asio::error::eof) return self->Failed("receive", ec);
      self->Echoed(n);
    };
    if (udp_) return udp_->async_receive(asio::buffer(echo_), got);
    if (tcp_) return asio::async_read(*tcp_, asio::buffer(echo_), got);
    asio::async_read(*unix_, asio::buffer(echo_), got);
  }

  void Echoed(size_t n) {
    outcome_.round_trip = absl::Now() - send_start_;
    const std::string& want = target_.payload;
    if (n < want.size() && target_.transport != Transport::kUdp) {
      return End(ProbeClass::kError,
                 absl::StrCat("the peer closed after ", n, " of ", want.size(),
                              " echo bytes"));
    }
    if (n != want.size()) {
      return End(
          ProbeClass::kError,
          absl::StrCat("the reply was ", n == echo_.size() ? "over " : "", n,
                       " bytes, not the ", want.size(), " sent"));
    }
    const auto diff = std::mismatch(want.begin(), want.end(), echo_.begin());
    if (diff.first != want.end()) {
      return End(ProbeClass::kError,
                 absl::StrCat("the echo differs from the payload at byte ",
                              diff.first - want.begin()));
    }
    End(ProbeClass::kOk, "");
  }

  void Failed(absl::string_view what, const std::error_code& ec) {
    End(ClassOf(ec),
        absl::StrCat(what, " ", outcome_.remote, ": ", ErrorText(ec)));
  }

  void TimedOut() {
    if (ended_) return;
    const absl::Duration waited =
        absl::Trunc(absl::Now() - start_, absl::Milliseconds(1));
    std::string words =
        absl::StrCat(stage_, " ", outcome_.remote, ": no answer within ",
                     absl::FormatDuration(waited));
    if (stage_ == "echo") {
      absl::StrAppend(&words, " (", outcome_.bytes_received, " of ",
                      target_.payload.size(), " bytes back)");
    }
    End(ProbeClass::kTimeout, std::move(words));
  }

  void End(ProbeClass result, std::string error) {
    if (ended_) return;
    ended_ = true;
    outcome_.result = result;
    outcome_.error = std::move(error);
    Close();
    on_end_(index_, std::move(outcome_));
  }

  void Close() {
    timer_.cancel();
    std::error_code ignored;
    if (tcp_) tcp_->close(ignored);
    if (udp_) udp_->close(ignored);
    if (unix_) unix_->close(ignored);
  }

  asio::io_context& io_;
  const ProberOptions& options_;
  const std::shared_ptr<Prober::Alive> alive_;
  const ProbeTarget& target_;  // In the call's spec, which outlives this.
  const size_t index_;
  const absl::Duration timeout_;
  asio::steady_timer timer_;
  EndFn on_end_;
  ProbeOutcome outcome_;
  bool ended_ = false;
  std::string stage_ = "connect";
  absl::Time start_, connect_start_, send_start_;
  std::vector<asio::ip::basic_endpoint<Tcp>> addresses_;
  size_t attempt_ = 0;
  std::optional<Tcp::socket> tcp_;
  std::optional<Udp::socket> udp_;
  std::optional<Local::socket> unix_;
  std::string echo_;
};

Prober::Prober(asio::io_context& io, ProberOptions options)
    : io_(io), options_(options), alive_(std::make_shared<Alive>()) {
  absl::MutexLock lock(&alive_->mu);
  alive_->io = &io_;
}

Prober::~Prober() { Shutdown(); }

uint64_t Prober::Start(ProbeSpec spec, Done<absl::StatusOr<ProbeReport>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  const size_t n = spec.targets.size();
  absl::Status bad;
  if (n == 0) {
    bad = absl::InvalidArgumentError("targets: at least one target is needed");
  } else if (n > options_.max_targets) {
    bad = absl::InvalidArgumentError(
        absl::StrCat("targets: ", n, " targets; at most ", options_.max_targets,
                     " per call"));
  } else if (spec.timeout < absl::ZeroDuration() ||
             spec.timeout > options_.max_timeout) {
    bad = absl::InvalidArgumentError(absl::StrCat(
        "timeout: ", absl::FormatDuration(spec.timeout),
        " is not between 0 and ", absl::FormatDuration(options_.max_timeout)));
  }
  size_t total = 0;
  for (size_t i = 0; bad.ok() && i < n; ++i) {
    bad = CheckTarget(spec.targets[i], i, options_);
    total += spec.targets[i].payload.size();
  }
  if (bad.ok() && total > options_.max_total_payload_bytes) {
    bad = absl::InvalidArgumentError(
        absl::StrCat("payload: ", total, " bytes in all targets; at most ",
                     options_.max_total_payload_bytes, " per call"));
  }
  if (!bad.ok()) {
    done(bad);
    return token;
  }
  if (calls_.fetch_add(1) >= options_.max_calls) {
    calls_.fetch_sub(1);
    done(absl::ResourceExhaustedError(absl::StrCat(
        "probe: ", options_.max_calls,
        " Probe calls are running (the agent's bound); retry after one "
        "ends")));
    return token;
  }
  if (spec.timeout == absl::ZeroDuration()) spec.timeout = kDefaultTimeout;
  if (spec.concurrency == 0) spec.concurrency = kDefaultConcurrency;
  spec.concurrency = std::min(spec.concurrency, options_.max_concurrency);
  auto call = std::make_shared<Call>();
  call->spec = std::move(spec);
  call->done = std::move(done);
  call->report.outcomes.resize(n);
  call->live.resize(n);
  asio::post(io_, [this, token, call]() mutable { Begin(token, call); });
  return token;
}

void Prober::Begin(uint64_t token, std::shared_ptr<Call> call) {
  call->started = absl::Now();
  running_.emplace(token, call);
  Fill(token, call);
}

void Prober::Fill(uint64_t token, const std::shared_ptr<Call>& call) {
  // A probe that fails at once (policy, a UDP socket error) ends inside
  // run->Begin and lands here again: the loop below picks its room up.
  if (call->filling) return;
  call->filling = true;
  while (!call->ended && call->next < call->spec.targets.size() &&
         call->running < call->spec.concurrency) {
    const size_t i = call->next++;
    if (absl::Now() >= call->spec.deadline) {
      ProbeOutcome& o = call->report.outcomes[i];
      o.result = ProbeClass::kTimeout;
      o.error = "not started: the call's deadline passed";
      ++call->finished;
      continue;
    }
    ++call->running;
    auto run = std::make_shared<ProbeRun>(
        io_, options_, alive_, call->spec.targets[i], i, call->spec.timeout,
        [this, token, call](size_t index, ProbeOutcome outcome) {
          call->report.outcomes[index] = std::move(outcome);
          call->live[index].reset();
          --call->running;
          ++call->finished;
          Fill(token, call);
        });
    call->live[i] = run;
    run->Begin(call->spec.deadline);
  }
  call->filling = false;
  if (!call->ended && call->finished == call->spec.targets.size()) {
    Finish(token, absl::OkStatus());
  }
}

void Prober::Finish(uint64_t token, absl::Status status) {
  auto it = running_.find(token);
  if (it == running_.end()) return;
  std::shared_ptr<Call> call = std::move(it->second);
  running_.erase(it);
  call->ended = true;
  for (auto& run : call->live) {
    if (run != nullptr) run->Abandon();
  }
  call->live.clear();
  calls_.fetch_sub(1);
  call->report.took = absl::Now() - call->started;
  if (status.ok()) {
    call->done(std::move(call->report));
  } else {
    call->done(std::move(status));
  }
}

void Prober::Cancel(uint64_t token) {
  asio::post(io_, [this, token] {
    Finish(token, absl::CancelledError("probe: the call was cancelled"));
  });
}

void Prober::Shutdown() {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->io = nullptr;
  }
  std::vector<uint64_t> tokens;
  for (const auto& [token, call] : running_) tokens.push_back(token);
  for (uint64_t token : tokens) {
    Finish(token, absl::UnavailableError("agent shutting down"));
  }
}

}  // namespace sockagent
