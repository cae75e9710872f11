#include "agent/prober.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/net_error.h"
#include "agent/quote.h"
#include "agent/tls.h"

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
  if (t.tls.has_value() && t.transport != Transport::kTcp) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(i, "tls"), ": TLS goes with TCP targets (",
                     t.transport == Transport::kUdp ? "UDP has no DTLS here"
                                                    : "not on UNIX probes",
                     ")"));
  }
  return absl::OkStatus();
}

// Targets that ask for the same TLS share one OpenSSL context (a context
// with a CA costs a PEM parse and a store; see Prober::Start); each host
// gets a light TlsClientContext over it (its name to verify).
struct TlsSpecKey {
  const TlsClientSpec* spec;

  template <typename H>
  friend H AbslHashValue(H h, const TlsSpecKey& k) {
    const TlsClientSpec& s = *k.spec;
    return H::combine(std::move(h), s.server_name, static_cast<int>(s.trust),
                      s.ca_pem, s.certificate_chain_pem, s.private_key_pem,
                      s.alpn, static_cast<int>(s.min_version),
                      static_cast<int>(s.max_version),
                      absl::ToInt64Nanoseconds(s.handshake_timeout));
  }
  bool operator==(const TlsSpecKey& o) const { return *spec == *o.spec; }
};

// The targets[i].tls field path for context errors, which name their field
// "tls.<field>".
absl::Status TlsFieldError(size_t i, const absl::Status& s) {
  const absl::string_view words = s.message();
  return absl::Status(s.code(),
                      absl::StartsWith(words, "tls")
                          ? absl::StrCat("targets[", i, "].", words)
                          : absl::StrCat(Field(i, "tls"), ": ", words));
}

// A context per target with TLS (null for the others): one OpenSSL context
// per distinct spec (at most `max_specs`, counted in *made), one name per
// (spec, host). A refused spec is named "targets[i].tls.<field>".
absl::StatusOr<std::vector<std::shared_ptr<const TlsClientContext>>>
MakeTlsContexts(const std::vector<ProbeTarget>& targets, size_t max_specs,
                size_t* made) {
  std::vector<std::shared_ptr<const TlsClientContext>> out(targets.size());
  struct PerSpec {
    std::shared_ptr<const TlsClientContext> base;
    absl::flat_hash_map<std::string, std::shared_ptr<const TlsClientContext>>
        by_host;
  };
  // Counted before any is built: a refused call costs no context.
  absl::flat_hash_set<TlsSpecKey, absl::Hash<TlsSpecKey>> distinct;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!targets[i].tls.has_value()) continue;
    distinct.insert(TlsSpecKey{&*targets[i].tls});
    if (distinct.size() > max_specs) {
      return absl::InvalidArgumentError(absl::StrCat(
          Field(i, "tls"), ": more than ", max_specs,
          " different TLS settings in one call; at most ", max_specs,
          " (targets may share one and differ in host)"));
    }
  }
  absl::flat_hash_map<TlsSpecKey, PerSpec, absl::Hash<TlsSpecKey>> specs;
  for (size_t i = 0; i < targets.size(); ++i) {
    const ProbeTarget& t = targets[i];
    if (!t.tls.has_value()) continue;
    const std::string& host = t.endpoint.host;
    auto it = specs.find(TlsSpecKey{&*t.tls});
    if (it == specs.end()) {
      absl::StatusOr<std::shared_ptr<const TlsClientContext>> ctx =
          TlsClientContext::Create(*t.tls, host);
      if (!ctx.ok()) return TlsFieldError(i, ctx.status());
      ++*made;
      PerSpec& per = specs[TlsSpecKey{&*t.tls}];
      per.base = *ctx;
      per.by_host.emplace(host, *ctx);
      out[i] = *std::move(ctx);
      continue;
    }
    PerSpec& per = it->second;
    auto named = per.by_host.find(host);
    if (named == per.by_host.end()) {
      absl::StatusOr<std::shared_ptr<const TlsClientContext>> ctx =
          per.base->ForHost(host);
      if (!ctx.ok()) return TlsFieldError(i, ctx.status());
      named = per.by_host.emplace(host, *std::move(ctx)).first;
    }
    out[i] = named->second;
  }
  return out;
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
    case ProbeClass::kTls:
      return "TLS";
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
  // By target; null without TLS. Shared by targets with the same spec and
  // host, and by each probe's session while it lives.
  std::vector<std::shared_ptr<const TlsClientContext>> tls;

  // A call dropped unrun (the loop stopped before it began) still answers.
  ~Call() {
    if (!ended && done) done(absl::UnavailableError("agent shutting down"));
  }
};

// One probe: resolve, check, connect, (TLS handshake,) send, read the
// echo. Loop thread only.
class ProbeRun : public std::enable_shared_from_this<ProbeRun> {
 public:
  using EndFn = absl::AnyInvocable<void(size_t, ProbeOutcome)>;

  ProbeRun(asio::io_context& io, const ProberOptions& options,
           std::shared_ptr<Prober::Alive> alive, const ProbeTarget& target,
           size_t index, absl::Duration timeout,
           std::shared_ptr<const TlsClientContext> tls, EndFn on_end)
      : io_(io),
        options_(options),
        alive_(std::move(alive)),
        target_(target),
        index_(index),
        timeout_(timeout),
        tls_ctx_(std::move(tls)),
        timer_(io),
        on_end_(std::move(on_end)) {}

  void Begin(absl::Time deadline) {
    start_ = absl::Now();
    until_ = std::min(start_ + timeout_, deadline);
    ArmTimer(until_);
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
    if (tls_ctx_ != nullptr) return StartTls();
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

  // ---- TLS (TCP targets with a context). The session sits on the probe's
  // own non-blocking socket (SSL_set_fd) and is driven by its readiness
  // waits, as agent/tls_stage.cc drives the engine's connections: no
  // thread, no second buffer. Each step runs until OpenSSL asks for a wait,
  // so bytes OpenSSL already holds (HasPending) are consumed before the
  // probe waits on the socket, which would not announce them.

  using Step = void (ProbeRun::*)();

  void StartTls() {
    stage_ = "handshake";
    handshake_start_ = absl::Now();
    absl::StatusOr<std::unique_ptr<TlsSession>> session =
        TlsSession::CreateClient(tls_ctx_, tcp_->native_handle(),
                                 /*cache=*/nullptr, "");
    if (!session.ok()) {
      return End(ProbeClass::kError, absl::StrCat("TLS ", outcome_.remote, ": ",
                                                  session.status().message()));
    }
    session_ = *std::move(session);
    // The handshake's own bound (the spec's, default 10 s) when it ends
    // before the probe's.
    const absl::Time handshake_until =
        handshake_start_ + session_->handshake_timeout();
    if (handshake_until < until_) {
      handshake_timer_armed_ = true;
      ArmTimer(handshake_until);
    }
    Handshake();
  }

  void Handshake() {
    const TlsIo r = session_->Handshake();
    switch (r.kind) {
      case TlsIoKind::kDone:
        break;
      case TlsIoKind::kWantRead:
        return Wait(asio::socket_base::wait_read, &ProbeRun::Handshake);
      case TlsIoKind::kWantWrite:
        return Wait(asio::socket_base::wait_write, &ProbeRun::Handshake);
      case TlsIoKind::kClosed:
      case TlsIoKind::kTruncated:
        // tls_stage.cc's words for the same event.
        return HandshakeFailed(
            "the peer closed the connection during the handshake");
      case TlsIoKind::kError:
        return HandshakeFailed(r.error);
    }
    outcome_.handshake_time = absl::Now() - handshake_start_;
    if (handshake_timer_armed_) {
      handshake_timer_armed_ = false;
      ArmTimer(until_);
    }
    if (target_.payload.empty()) return End(ProbeClass::kOk, "");
    stage_ = "send";
    send_start_ = absl::Now();
    TlsSend();
  }

  void TlsSend() {
    const std::string& payload = target_.payload;
    while (outcome_.bytes_sent < payload.size()) {
      // A retry after WANT_WRITE passes the same bytes again (the context
      // allows partial writes and a moving buffer).
      const size_t at = outcome_.bytes_sent;
      const TlsIo r = session_->Write(payload.data() + at, payload.size() - at);
      switch (r.kind) {
        case TlsIoKind::kDone:
          outcome_.bytes_sent += r.bytes;
          continue;
        case TlsIoKind::kWantWrite:
          return Wait(asio::socket_base::wait_write, &ProbeRun::TlsSend);
        case TlsIoKind::kWantRead:
          return Wait(asio::socket_base::wait_read, &ProbeRun::TlsSend);
        case TlsIoKind::kClosed:
        case TlsIoKind::kTruncated:
        case TlsIoKind::kError:
          return TlsFailed("send", r);
      }
    }
    if (!target_.expect_echo) return End(ProbeClass::kOk, "");
    stage_ = "echo";
    echo_.resize(payload.size());
    TlsReadEcho();
  }

  void TlsReadEcho() {
    while (outcome_.bytes_received < echo_.size()) {
      const size_t at = outcome_.bytes_received;
      const TlsIo r = session_->Read(echo_.data() + at, echo_.size() - at);
      switch (r.kind) {
        case TlsIoKind::kDone:
          outcome_.bytes_received += r.bytes;
          continue;
        case TlsIoKind::kWantRead:
          return Wait(asio::socket_base::wait_read, &ProbeRun::TlsReadEcho);
        case TlsIoKind::kWantWrite:
          return Wait(asio::socket_base::wait_write, &ProbeRun::TlsReadEcho);
        case TlsIoKind::kClosed:
        case TlsIoKind::kTruncated:
          return Echoed(outcome_.bytes_received);  // Short: said there.
        case TlsIoKind::kError:
          return TlsFailed("receive", r);
      }
    }
    Echoed(outcome_.bytes_received);
  }

  // Calls `step` once the socket is ready as asked.
  void Wait(asio::socket_base::wait_type what, Step step) {
    tcp_->async_wait(
        what, [self = shared_from_this(), step](const std::error_code& ec) {
          if (self->ended_) return;
          // A socket error shows up in OpenSSL's next call too; an aborted
          // wait means the socket was closed.
          if (ec == asio::error::operation_aborted) return;
          (self.get()->*step)();
        });
  }

  void HandshakeFailed(absl::string_view words) {
    outcome_.handshake_time = absl::Now() - handshake_start_;
    // The words OpenClient's failures carry (agent/tls_stage.cc), which
    // `sockctl matrix` classifies (cli/matrix.cc TlsFailureClass).
    End(ProbeClass::kTls, absl::StrCat("TLS handshake failed: ", words));
  }

  void TlsFailed(absl::string_view what, const TlsIo& r) {
    if (r.sys_errno != 0) {
      return Failed(what, std::error_code(r.sys_errno, std::system_category()));
    }
    End(ProbeClass::kError,
        absl::StrCat(what, " ", outcome_.remote,
                     ": TLS: ", r.error.empty() ? "the peer closed" : r.error));
  }

  void ArmTimer(absl::Time at) {
    // Re-arming cancels the wait before: its handler sees the abort.
    timer_.expires_after(absl::ToChronoNanoseconds(
        std::max(at - absl::Now(), absl::ZeroDuration())));
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (!ec) self->TimedOut();
    });
  }

  void Failed(absl::string_view what, const std::error_code& ec) {
    End(ClassOf(ec),
        absl::StrCat(what, " ", outcome_.remote, ": ", ErrorText(ec)));
  }

  void TimedOut() {
    if (ended_) return;
    if (stage_ == "handshake") {
      // The words TlsFailureClass maps to "handshake timed out".
      const absl::Duration waited =
          absl::Trunc(absl::Now() - handshake_start_, absl::Milliseconds(1));
      return HandshakeFailed(
          absl::StrCat("timed out after ", absl::FormatDuration(waited)));
    }
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
    if (session_ != nullptr) {
      session_->SendCloseNotify();  // Best effort; only after a handshake.
      session_.reset();             // SSL_free before the socket closes.
    }
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
  const std::shared_ptr<const TlsClientContext> tls_ctx_;  // Null: no TLS.
  asio::steady_timer timer_;
  EndFn on_end_;
  ProbeOutcome outcome_;
  bool ended_ = false;
  std::string stage_ = "connect";
  absl::Time start_, until_, connect_start_, send_start_, handshake_start_;
  std::unique_ptr<TlsSession> session_;
  bool handshake_timer_armed_ = false;  // The timer is the handshake's.
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
  // After admission: a context costs CPU (~0.1 ms with a CA; see
  // MakeTlsContexts), which a refused call should not spend.
  size_t made = 0;
  absl::StatusOr<std::vector<std::shared_ptr<const TlsClientContext>>> tls =
      MakeTlsContexts(spec.targets, options_.max_tls_specs, &made);
  tls_contexts_made_.fetch_add(made);
  if (!tls.ok()) {
    calls_.fetch_sub(1);
    done(tls.status());
    return token;
  }
  if (spec.timeout == absl::ZeroDuration()) spec.timeout = kDefaultTimeout;
  if (spec.concurrency == 0) spec.concurrency = kDefaultConcurrency;
  spec.concurrency = std::min(spec.concurrency, options_.max_concurrency);
  auto call = std::make_shared<Call>();
  call->spec = std::move(spec);
  call->tls = *std::move(tls);
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
        call->tls[i], [this, token, call](size_t index, ProbeOutcome outcome) {
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
