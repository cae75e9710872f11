// Connector (agent/connector.h): OpenClient attempts and the engine's name
// lookups. Every function here runs under the engine lock, except Deliver
// and the pool callback built in Resolve, which run on a pool thread and
// only post to the loop.
#include "agent/connector.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/client_spec.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"
#include "agent/quote.h"

namespace sockagent {
namespace engine_internal {

namespace {

using KeepIdle =
    asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPIDLE>;
using KeepInterval =
    asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPINTVL>;
using KeepCount =
    asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPCNT>;

const char* FamilyName(Family family) {
  switch (family) {
    case Family::kIpv4:
      return "IPv4";
    case Family::kIpv6:
      return "IPv6";
    case Family::kUnix:
      return "UNIX";
    case Family::kUnspecified:
      break;
  }
  return "IP";
}

std::string HostPort(absl::string_view host, absl::string_view port) {
  if (host.find(':') != absl::string_view::npos && host.front() != '[') {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

// Wildcard addresses for host "" (servers): IPv4 first, then IPv6.
IpEndpoints Wildcards(Family family, uint16_t port) {
  IpEndpoints out;
  if (family != Family::kIpv6) {
    out.emplace_back(asio::ip::address_v4::any(), port);
  }
  if (family != Family::kIpv4) {
    out.emplace_back(asio::ip::address_v6::any(), port);
  }
  return out;
}

// Every address of `target` was refused by the policy; `first` says why
// for the first one.
absl::Status PolicyRefusal(absl::string_view target, const absl::Status& first,
                           size_t count) {
  if (count == 1) {
    return absl::PermissionDeniedError(
        absl::StrCat("connect ", target, ": ", first.message()));
  }
  return absl::PermissionDeniedError(
      absl::StrCat("connect ", target, ": none of its ", count,
                   " addresses is allowed (", first.message(), ", ...)"));
}

}  // namespace

Connector::Connector(EngineImpl& engine, ResolverPool& pool)
    : engine_(engine), pool_(pool) {
  absl::MutexLock lock(&inbox_->mu);
  inbox_->connector = this;
}

Connector::~Connector() {
  absl::MutexLock lock(&inbox_->mu);
  inbox_->connector = nullptr;
}

void Connector::Shutdown() {
  // OpenClient calls in flight: their lookups and sockets die with them.
  auto attempts = std::move(attempts_);
  attempts_.clear();
  proxy_attempts_.clear();
  for (auto& [id, attempt] : attempts) {
    if (attempt->resolve_id != 0) CancelResolve(attempt->resolve_id);
    attempt->done(ShuttingDownError());
  }
  attempts.clear();
  // StartServer calls waiting for a name lookup.
  auto resolves = std::move(resolves_);
  resolves_.clear();
  for (auto& [id, resolve] : resolves) resolve->done(ShuttingDownError());
  resolves.clear();
}

void Connector::Deliver(uint64_t resolve_id,
                        absl::StatusOr<std::vector<AddressEntry>> entries) {
  // Hands the result to the loop, which finds the lookup by number (or
  // nothing, if it was cancelled). After Shutdown the loop is gone and the
  // handler is dropped unrun when the engine's io_context goes.
  asio::post(engine_.io_,
             engine_.Locked(
                 [this, resolve_id, entries = std::move(entries)]() mutable {
                   OnResolved(resolve_id, std::move(entries));
                 }));
}

void Connector::Open(ClientSpec spec, absl::Time deadline,
                     Done<absl::StatusOr<ConnectionInfo>> done,
                     uint64_t proxy_for) {
  // Called by EngineImpl::OpenClient and OpenStream, under the engine lock.
  // (The Connector's own state is its own; only engine calls need the lock.)
  engine_.AssertEngineLock();
  if (absl::Status s = ValidateClientSpec(spec); !s.ok()) {
    done(s);
    return;
  }
  {
    absl::StatusOr<std::optional<uint16_t>> source_port =
        ParsePort(spec.source.port);
    const uint16_t port = source_port.ok() ? source_port->value_or(0) : 0;
    if (absl::Status s =
            engine_.options_.policy.CheckSource(spec.source.host, port);
        !s.ok()) {
      done(s);
      return;
    }
  }
  // Connections being opened count against the limit already.
  if (engine_.AtConnectionLimit()) {
    done(absl::ResourceExhaustedError(
        absl::StrCat("max_connections (", engine_.options_.max_connections,
                     ") reached: close connections first")));
    return;
  }
  const std::string target = spec.transport == Transport::kUnix
                                 ? absl::StrCat("unix:", spec.remote.unix_path)
                                 : HostPort(spec.remote.host, spec.remote.port);
  const absl::Duration timeout =
      std::min(spec.connect_timeout > absl::ZeroDuration()
                   ? spec.connect_timeout
                   : engine_.options_.default_connect_timeout,
               deadline - absl::Now());
  if (timeout <= absl::ZeroDuration()) {
    done(absl::DeadlineExceededError(absl::StrCat(
        "connect ", target, ": the call's deadline has already passed")));
    return;
  }
  auto attempt = std::make_unique<ClientAttempt>();
  ClientAttempt& a = *attempt;
  a.id = next_attempt_id_++;
  a.spec = std::move(spec);
  a.done = std::move(done);
  a.timeout = timeout;
  a.deadline = deadline;
  a.target = target;
  a.proxy_for = proxy_for;
  if (!a.spec.source.host.empty()) {
    a.source_address = ParseIpLiteral(a.spec.source.host);
  }
  if (absl::StatusOr<std::optional<uint16_t>> port =
          ParsePort(a.spec.source.port);
      port.ok() && port->has_value()) {
    a.source_port = **port;
  }
  a.timer = std::make_unique<Timer>(engine_.io_, ToSteady(timeout));
  a.timer->async_wait(
      engine_.Locked([this, id = a.id](const asio::error_code& ec) {
        if (!ec) OnClientTimeout(id);
      }));
  const uint64_t id = a.id;
  attempts_.emplace(id, std::move(attempt));
  if (proxy_for != 0) proxy_attempts_[proxy_for] = id;
  if (a.spec.transport == Transport::kUnix) {
    // The policy is checked on the real path of the file connect() will
    // reach (through /proc/self/fd/M), not on the string.
    absl::StatusOr<UnixConnectTarget> target =
        OpenUnixConnectTarget(a.spec.remote.unix_path, engine_.options_.policy);
    if (!target.ok()) {
      FinishAttempt(id, target.status());
      return;
    }
    absl::StatusOr<StreamProtocol::endpoint> ep =
        UnixEndpoint(target->kernel_path);
    if (!ep.ok()) {
      FinishAttempt(id, ep.status());
      return;
    }
    a.unix_target = std::move(target->file);
    a.endpoints.push_back(*ep);
    ConnectNext(a);
    return;
  }
  LookupQuery query;
  query.host = a.spec.remote.host;
  query.port = a.spec.remote.port;
  query.transport = a.spec.transport;
  query.family = a.spec.family;
  query.passive = false;
  const uint64_t resolve_id =
      Resolve(std::move(query), absl::Now() + timeout,
              [this, id](absl::StatusOr<IpEndpoints> endpoints) {
                OnClientResolved(id, std::move(endpoints));
              });
  // A numeric lookup already ran (and may have finished the attempt).
  if (auto it = attempts_.find(id); it != attempts_.end() && resolve_id != 0) {
    it->second->resolve_id = resolve_id;
  }
}

void Connector::OnClientResolved(uint64_t attempt_id,
                                 absl::StatusOr<IpEndpoints> endpoints) {
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end()) return;
  ClientAttempt& a = *it->second;
  a.resolve_id = 0;
  if (!endpoints.ok()) {
    FinishAttempt(attempt_id, endpoints.status());
    return;
  }
  // The family is a preference: its addresses first, in resolver order.
  std::stable_partition(endpoints->begin(), endpoints->end(),
                        [&a](const asio::ip::tcp::endpoint& e) {
                          return FamilyMatches(a.spec.family, e.address());
                        });
  absl::Status refused;  // Addresses --allow-dest forbids are skipped.
  size_t refused_count = 0;
  std::string own;  // A proxy's own listening address, never dialled.
  for (const asio::ip::tcp::endpoint& e : *endpoints) {
    // A source address pins the family.
    if (a.source_address.has_value() &&
        a.source_address->is_v4() != e.address().is_v4()) {
      continue;
    }
    if (a.proxy_for != 0) {
      // The upstream named the proxy itself: each dial would be accepted
      // by the proxy and dial again (agent/proxy.h).
      if (std::string o = engine_.proxy_.OwnAddressDialled(a.proxy_for, e);
          !o.empty()) {
        if (own.empty()) own = std::move(o);
        continue;
      }
    }
    if (absl::Status st = engine_.options_.policy.CheckDestination(
            e.address().to_string(), e.port());
        !st.ok()) {
      if (refused_count++ == 0) refused = st;
      continue;
    }
    a.endpoints.emplace_back(e);
  }
  if (a.endpoints.empty() && refused_count > 0) {
    FinishAttempt(attempt_id, PolicyRefusal(a.target, refused, refused_count));
    return;
  }
  if (a.endpoints.empty() && !own.empty()) {
    FinishAttempt(attempt_id,
                  absl::FailedPreconditionError(absl::StrCat(
                      "connect ", a.target,
                      ": not dialled: the proxy would dial itself (its own "
                      "listening address ",
                      own, ")")));
    return;
  }
  if (a.endpoints.empty()) {
    FinishAttempt(attempt_id, absl::InvalidArgumentError(
                                  absl::StrCat("connect ", a.target,
                                               ": no address of the family of "
                                               "source address ",
                                               a.spec.source.host)));
    return;
  }
  ConnectNext(a);
}

absl::Status Connector::OpenClientSocket(ClientAttempt& a,
                                         const StreamProtocol::endpoint& to,
                                         bool* fatal) {
  asio::error_code ec;
  *fatal = false;
  const bool v4 = to.protocol().family() == AF_INET;
  const asio::ip::address source_address = a.source_address.value_or(
      v4 ? asio::ip::address(asio::ip::address_v4::any())
         : asio::ip::address(asio::ip::address_v6::any()));
  const bool bind_source = a.source_address.has_value() || a.source_port != 0;
  const std::string source =
      ToSocketAddress(source_address, a.source_port).ToString();
  if (a.spec.transport == Transport::kUdp) {
    a.udp = std::make_unique<UdpSocket>(engine_.io_);
    a.udp->open(v4 ? asio::ip::udp::v4() : asio::ip::udp::v6(), ec);
    if (ec) return ErrorStatus(absl::StrCat("socket for ", a.trying), ec);
    *fatal = true;  // From here on, the same for every address.
    if (bind_source) {
      // No SO_REUSEADDR: on UDP it would share the port with another socket
      // (and its datagrams).
      a.udp->bind(asio::ip::udp::endpoint(source_address, a.source_port), ec);
      if (ec) return ErrorStatus(absl::StrCat("bind source ", source), ec);
    }
    return absl::OkStatus();
  }
  a.stream = std::make_unique<StreamSocket>(engine_.io_);
  a.stream->open(to.protocol(), ec);
  if (ec) return ErrorStatus(absl::StrCat("socket for ", a.trying), ec);
  *fatal = true;  // From here on, the same for every address.
  if (a.spec.transport != Transport::kTcp) return absl::OkStatus();
  if (a.spec.tcp_nodelay) {
    a.stream->set_option(asio::ip::tcp::no_delay(true), ec);
    if (ec) return ErrorStatus("TCP_NODELAY", ec);
  }
  if (a.spec.keepalive) {
    a.stream->set_option(asio::socket_base::keep_alive(true), ec);
    if (ec) return ErrorStatus("SO_KEEPALIVE", ec);
    auto seconds = [](absl::Duration d) {
      return static_cast<int>(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
    };
    if (a.spec.keepalive_idle > absl::ZeroDuration()) {
      a.stream->set_option(KeepIdle(seconds(a.spec.keepalive_idle)), ec);
      if (ec) return ErrorStatus("TCP_KEEPIDLE", ec);
    }
    if (a.spec.keepalive_interval > absl::ZeroDuration()) {
      a.stream->set_option(KeepInterval(seconds(a.spec.keepalive_interval)),
                           ec);
      if (ec) return ErrorStatus("TCP_KEEPINTVL", ec);
    }
    if (a.spec.keepalive_count > 0) {
      a.stream->set_option(KeepCount(static_cast<int>(a.spec.keepalive_count)),
                           ec);
      if (ec) return ErrorStatus("TCP_KEEPCNT", ec);
    }
  }
  if (bind_source) {
    if (a.source_port != 0) {
      a.stream->set_option(asio::socket_base::reuse_address(true), ec);
    }
    a.stream->bind(StreamProtocol::endpoint(
                       asio::ip::tcp::endpoint(source_address, a.source_port)),
                   ec);
    if (ec) return ErrorStatus(absl::StrCat("bind source ", source), ec);
  }
  return absl::OkStatus();
}

void Connector::ConnectNext(ClientAttempt& a) {
  while (a.next < a.endpoints.size()) {
    const StreamProtocol::endpoint& to = a.endpoints[a.next++];
    // A UNIX endpoint is /proc/self/fd/M: name the caller's path instead.
    a.trying = a.spec.transport == Transport::kUnix
                   ? a.target
                   : PackedAddress::FromKernel(to.data(), to.size()).ToString();
    a.stream.reset();
    a.udp.reset();
    bool fatal = false;
    if (absl::Status s = OpenClientSocket(a, to, &fatal); !s.ok()) {
      if (fatal) {
        FinishAttempt(a.id, s);
        return;
      }
      a.last_error = s;  // E.g. no IPv6 on this host: try the next one.
      continue;
    }
    if (a.udp != nullptr) {
      // Connecting a UDP socket only sets its default peer: no handshake.
      asio::error_code ec;
      const PackedAddress remote =
          PackedAddress::FromKernel(to.data(), to.size());
      a.udp->connect(remote.udp(), ec);
      if (ec) {
        a.last_error = ErrorStatus(absl::StrCat("connect ", a.trying), ec);
        continue;
      }
      OnClientConnected(a.id, ec);
      return;
    }
    a.stream->async_connect(
        to, engine_.Locked([this, id = a.id](const asio::error_code& ec) {
          OnClientConnected(id, ec);
        }));
    return;
  }
  absl::Status error = a.last_error;
  if (a.endpoints.size() > 1) {
    error = absl::Status(
        error.code(),
        absl::StrCat(error.message(), " (tried ", a.endpoints.size(),
                     " addresses of ", a.target, ")"));
  }
  FinishAttempt(a.id, error);
}

void Connector::OnClientConnected(uint64_t attempt_id,
                                  const asio::error_code& ec) {
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end()) return;  // Timed out or shut down meanwhile.
  ClientAttempt& a = *it->second;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    a.last_error = ErrorStatus(absl::StrCat("connect ", a.trying), ec);
    ConnectNext(a);
    return;
  }
  engine_.AssertEngineLock();  // A Locked handler of the engine.
  // Connected: the dial is over and no longer the client's to cancel.
  // AddOpened can close both halves at once (a TLS handshake that fails
  // at its first write closes the upstream, the proxy then the client,
  // whose OnClosed would cancel this dial and free `a` under our feet).
  if (a.proxy_for != 0) proxy_attempts_.erase(a.proxy_for);
  ConnectionInfo info = engine_.conn_io_.AddOpened(a);
  if (a.spec.tls != nullptr) {
    // TLS: answered once the handshake ended (agent/tls_stage.cc).
    engine_.tls_.AwaitHandshake(info.id, ReleaseAttempt(attempt_id));
    return;
  }
  FinishAttempt(attempt_id, std::move(info));
}

void Connector::OnClientTimeout(uint64_t attempt_id) {
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end()) return;
  const ClientAttempt& a = *it->second;
  const std::string what =
      a.resolve_id != 0
          ? absl::StrCat("resolve ", a.spec.remote.host)
          : absl::StrCat("connect ", a.trying.empty() ? a.target : a.trying);
  FinishAttempt(attempt_id, absl::DeadlineExceededError(
                                absl::StrCat(what, ": timed out after ",
                                             absl::FormatDuration(a.timeout))));
}

void Connector::FinishAttempt(uint64_t attempt_id,
                              absl::StatusOr<ConnectionInfo> result) {
  Done<absl::StatusOr<ConnectionInfo>> done = ReleaseAttempt(attempt_id);
  if (done) done(std::move(result));
}

Done<absl::StatusOr<ConnectionInfo>> Connector::ReleaseAttempt(
    uint64_t attempt_id) {
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end()) return nullptr;
  std::unique_ptr<ClientAttempt> a = std::move(it->second);
  attempts_.erase(it);
  if (a->proxy_for != 0) proxy_attempts_.erase(a->proxy_for);
  if (a->resolve_id != 0) CancelResolve(a->resolve_id);
  // Destroying the timer and any socket still connecting cancels their
  // handlers; they find no attempt and return.
  a->timer.reset();
  return std::move(a->done);
}

std::string Connector::CancelProxyDial(uint64_t down_num) {
  auto p = proxy_attempts_.find(down_num);
  if (p == proxy_attempts_.end()) return "";
  auto it = attempts_.find(p->second);
  if (it == attempts_.end()) {
    proxy_attempts_.erase(p);
    return "";
  }
  const ClientAttempt& a = *it->second;
  std::string dialling = a.trying.empty() ? a.target : a.trying;
  // Nobody is told: the downstream that asked for the dial is closed.
  ReleaseAttempt(p->second);
  return dialling;
}

uint64_t Connector::Resolve(LookupQuery query, absl::Time deadline,
                            Done<absl::StatusOr<IpEndpoints>> done) {
  absl::StatusOr<std::optional<uint16_t>> port = ParsePort(query.port);
  if (!port.ok()) {
    done(port.status());
    return 0;
  }
  if (query.host.empty() && !query.passive) {
    done(absl::InvalidArgumentError("host is empty"));
    return 0;
  }
  std::optional<asio::ip::address> literal = ParseIpLiteral(query.host);
  if (literal.has_value() && query.passive &&
      !FamilyMatches(query.family, *literal)) {
    done(absl::InvalidArgumentError(absl::StrCat(
        "address ", query.host, " is not ", FamilyName(query.family))));
    return 0;
  }
  if (port->has_value() && (query.host.empty() || literal.has_value())) {
    done(literal.has_value() ? IpEndpoints{{*literal, **port}}
                             : Wildcards(query.family, **port));
    return 0;
  }
  // A host name and/or a service name: getaddrinfo on a pool thread. No
  // AI_ADDRCONFIG: on a host with only loopback addresses it would hide
  // "localhost".
  const std::string what = query.host.empty() || literal.has_value()
                               ? absl::StrCat("service '", query.port, "'")
                               : query.host;
  if (resolves_.size() >= kMaxNameLookups) {
    done(absl::ResourceExhaustedError(
        absl::StrCat("resolve ", what, ": ", kMaxNameLookups,
                     " name lookups are in progress already; retry later")));
    return 0;
  }
  sockagent::ResolveQuery lookup;
  lookup.host = literal.has_value() ? literal->to_string() : query.host;
  lookup.service = query.port;
  lookup.socket_type = query.transport == Transport::kUdp ? SocketType::kDgram
                                                          : SocketType::kStream;
  lookup.numeric_host = literal.has_value();
  lookup.numeric_service = port->has_value();
  lookup.passive = query.passive;
  const uint64_t id = next_resolve_id_++;
  // The callback runs on a pool thread, maybe after the engine is gone: it
  // holds the inbox, not the Connector.
  const bool queued = pool_.SubmitResolve(
      std::move(lookup), deadline,
      [inbox = inbox_, id](absl::StatusOr<std::vector<AddressEntry>> entries) {
        absl::MutexLock lock(&inbox->mu);
        if (inbox->connector != nullptr) {
          inbox->connector->Deliver(id, std::move(entries));
        }
      });
  if (!queued) {
    done(absl::ResourceExhaustedError(
        absl::StrCat("resolve ", what,
                     ": too many name lookups are in progress; retry "
                     "later")));
    return 0;
  }
  auto pending = std::make_unique<PendingResolve>();
  pending->literal = literal;
  pending->done = std::move(done);
  pending->query = std::move(query);
  resolves_.emplace(id, std::move(pending));
  return id;
}

void Connector::OnResolved(uint64_t resolve_id,
                           absl::StatusOr<std::vector<AddressEntry>> entries) {
  auto it = resolves_.find(resolve_id);
  if (it == resolves_.end()) return;  // Cancelled.
  std::unique_ptr<PendingResolve> r = std::move(it->second);
  resolves_.erase(it);
  const LookupQuery& q = r->query;
  if (!entries.ok()) {
    r->done(entries.status());
    return;
  }
  IpEndpoints endpoints;
  for (const AddressEntry& entry : *entries) {
    std::optional<asio::ip::address> address = ParseIpLiteral(entry.address);
    if (address.has_value()) endpoints.emplace_back(*address, entry.port);
  }
  IpEndpoints out;
  if (q.host.empty()) {
    // Only the service's port was looked up; bind the wildcards.
    out = Wildcards(q.family, endpoints.empty() ? 0 : endpoints[0].port());
  } else {
    for (const asio::ip::tcp::endpoint& e : endpoints) {
      if (q.passive && !FamilyMatches(q.family, e.address())) continue;
      if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
    }
  }
  if (out.empty()) {
    r->done(absl::NotFoundError(absl::StrCat(
        "resolve ", q.host, ": no ", FamilyName(q.family), " address")));
    return;
  }
  r->done(std::move(out));
}

void Connector::CancelResolve(uint64_t resolve_id) {
  // The lookup itself runs on (it cannot be interrupted); its result finds
  // nothing when it arrives.
  resolves_.erase(resolve_id);
}

}  // namespace engine_internal
}  // namespace sockagent
