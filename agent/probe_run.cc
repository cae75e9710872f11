// One probe of a Probe call (agent/probe_run.h): resolve, check, connect,
// (TLS handshake,) send, read the echo, classify.
#include "agent/probe_run.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/net_error.h"
#include "agent/quote.h"

namespace sockagent {
namespace {

using Tcp = asio::ip::tcp;
using Udp = asio::ip::udp;
using Local = asio::local::stream_protocol;

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

class ProbeRunImpl final : public ProbeRun,
                           public std::enable_shared_from_this<ProbeRunImpl> {
 public:
  ProbeRunImpl(asio::io_context& io, const ProberOptions& options,
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

  void Begin(absl::Time deadline) override {
    start_ = absl::Now();
    until_ = std::min(start_ + timeout_, deadline);
    ArmTimer(until_);
    if (target_.transport == Transport::kUnix) return ConnectUnix();
    Resolve();
  }

  // Ends without reporting (the call was cancelled or is shutting down).
  void Abandon() override {
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
    std::weak_ptr<ProbeRunImpl> weak = weak_from_this();
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

  using Step = void (ProbeRunImpl::*)();

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
        return Wait(asio::socket_base::wait_read, &ProbeRunImpl::Handshake);
      case TlsIoKind::kWantWrite:
        return Wait(asio::socket_base::wait_write, &ProbeRunImpl::Handshake);
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
          return Wait(asio::socket_base::wait_write, &ProbeRunImpl::TlsSend);
        case TlsIoKind::kWantRead:
          return Wait(asio::socket_base::wait_read, &ProbeRunImpl::TlsSend);
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
          return Wait(asio::socket_base::wait_read, &ProbeRunImpl::TlsReadEcho);
        case TlsIoKind::kWantWrite:
          return Wait(asio::socket_base::wait_write,
                      &ProbeRunImpl::TlsReadEcho);
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

}  // namespace

std::shared_ptr<ProbeRun> ProbeRun::Make(
    asio::io_context& io, const ProberOptions& options,
    std::shared_ptr<Prober::Alive> alive, const ProbeTarget& target,
    size_t index, absl::Duration timeout,
    std::shared_ptr<const TlsClientContext> tls, EndFn on_end) {
  return std::make_shared<ProbeRunImpl>(io, options, std::move(alive), target,
                                        index, timeout, std::move(tls),
                                        std::move(on_end));
}

}  // namespace sockagent
