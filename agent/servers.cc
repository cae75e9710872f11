// Servers (agent/servers.h): validating a ServerSpec, binding (dual stack,
// every resolved address, UNIX paths), TTL, and stopping. What a bound
// socket does next lives beside it: accepting in servers_accept.cc,
// datagrams and UDP peer sessions in udp_io.cc.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h):
// in a completion handler on the loop thread, or inline on the caller's
// thread (a gRPC thread) inside a public Engine call. Nothing here blocks;
// socket calls are non-blocking.
#include "agent/servers.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/descriptor_exhaustion.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"
#include "agent/quote.h"
#include "agent/server_name.h"

namespace sockagent {
namespace engine_internal {

namespace {

// Port-0 servers on several addresses retry when the port the first socket
// got is taken on another address.
constexpr int kMaxPortRetries = 8;
// Receive buffer asked for on UDP server sockets. The default (~208 KiB)
// absorbs only ~150 datagrams of 1400 bytes: a burst longer than one loop
// wakeup lost 60 % of them under load (benchmark 2, BENCHMARKS.md). The
// kernel caps it at net.core.rmem_max (4 MiB on Debian 12); this is kernel
// memory, taken only as datagrams queue up.
constexpr int kUdpReceiveBufferBytes = 4 << 20;
absl::Status ValidateServerSpec(const ServerSpec& spec,
                                const EngineOptions& options) {
  if (spec.transport == Transport::kUnix) {
    if (!spec.bind.host.empty() || !spec.bind.port.empty()) {
      return absl::InvalidArgumentError(
          "a UNIX server takes unix_path only, not host or port");
    }
    if (spec.family != Family::kUnspecified && spec.family != Family::kUnix) {
      return absl::InvalidArgumentError(
          "a UNIX server cannot use an IP family");
    }
    if (absl::Status s = CheckUnixPathSyntax(spec.bind.unix_path); !s.ok()) {
      return s;
    }
  } else {
    if (!spec.bind.unix_path.empty()) {
      return absl::InvalidArgumentError("unix_path is for UNIX servers only");
    }
    if (spec.family == Family::kUnix) {
      return absl::InvalidArgumentError("family UNIX needs transport UNIX");
    }
  }
  if (spec.tls != nullptr && spec.transport == Transport::kUdp) {
    return absl::InvalidArgumentError(
        "tls: UDP has no TLS here (no DTLS); use TCP or UNIX");
  }
  if (spec.backlog < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backlog ", spec.backlog, " is negative"));
  }
  if (spec.ttl < absl::ZeroDuration() ||
      spec.idle_timeout < absl::ZeroDuration() ||
      spec.udp_session_idle_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("durations must not be negative");
  }
  if (spec.behavior.kind == BehaviorKind::kProxy) {
    if (absl::Status s = CheckProxySpec(spec); !s.ok()) return s;
  }
  if (spec.behavior.kind == BehaviorKind::kGreeting) {
    const size_t limit = spec.transport == Transport::kUdp
                             ? kMaxDatagram
                             : options.send_buffer_bytes;
    if (spec.behavior.greeting.size() > limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("greeting of ", spec.behavior.greeting.size(),
                       " bytes is above the limit of ", limit, " bytes"));
    }
  }
  return absl::OkStatus();
}

// `greeting` is the spec's, taken out of it once (spec.behavior.greeting is
// empty by now): every attempt shares it.
std::unique_ptr<Server> NewServer(
    const ServerSpec& spec, const EngineOptions& options,
    const std::shared_ptr<const std::string>& greeting) {
  auto s = std::make_unique<Server>();
  ServerInfo& info = s->info;
  info.transport = spec.transport;
  info.behavior = spec.behavior;
  info.behavior.greeting.clear();
  if (!greeting->empty()) s->greeting = greeting;
  info.backlog = spec.backlog == 0 ? asio::socket_base::max_listen_connections
                                   : spec.backlog;
  info.ttl = spec.ttl;
  info.idle_timeout = spec.idle_timeout;
  info.stopped_at = absl::InfinitePast();
  if (spec.transport == Transport::kUdp) {
    info.udp_max_sessions = spec.udp_max_sessions == 0
                                ? options.max_udp_sessions_per_server
                                : std::min(spec.udp_max_sessions,
                                           options.max_udp_sessions_per_server);
    info.udp_session_idle_timeout =
        spec.udp_session_idle_timeout > absl::ZeroDuration()
            ? spec.udp_session_idle_timeout
            : options.udp_session_idle_timeout;
    info.udp_reply = EffectiveUdpReplyLimits(options.udp_reply, spec.udp_reply);
    if (spec.behavior.kind == BehaviorKind::kEcho ||
        spec.behavior.kind == BehaviorKind::kGreeting ||
        spec.behavior.kind == BehaviorKind::kProxy) {
      s->reply_budget = std::make_unique<UdpReplyBudget>(info.udp_reply);
    }
  }
  if (!spec.labels.empty()) {
    s->labels = std::make_shared<const Labels>(spec.labels);
  }
  info.name = spec.name;
  info.metrics = spec.metrics;
  if (!spec.name.empty()) {
    info.requested = std::make_shared<const ServerSpec>(spec);
  }
  if (spec.tls != nullptr) {
    s->tls = spec.tls;
    info.tls = spec.tls->info();
  }
  return s;
}

absl::Status ReplaceFailed(const Server* replaced, absl::Status status) {
  if (replaced == nullptr) return status;
  return absl::Status(
      status.code(),
      absl::StrCat("replace server ", QuoteInput(replaced->info.name),
                   ": the old server ", replaced->info.id,
                   " is stopped and its name is free; starting the new one "
                   "failed: ",
                   status.message()));
}

// Per-server series are bounded: `replacing` (about to stop) frees its slot.
absl::Status CheckMetricsSlot(const ServerSpec& spec, Registry& registry,
                              const Server* replacing, size_t max) {
  if (!spec.metrics) return absl::OkStatus();
  size_t with_metrics = 0;
  for (const auto& [num, s] : registry.servers()) {
    if (!s->stopped() && s->info.metrics && s.get() != replacing) {
      ++with_metrics;
    }
  }
  if (with_metrics < max) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "metrics: ", max,
      " listening servers already export per-server series (the bound); "
      "start this one without metrics, or stop one of them"));
}

absl::Status MaxServersError(size_t max_servers) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "max_servers (", max_servers, ") reached: stop a server first"));
}

}  // namespace

void Servers::Start(ServerSpec spec, Done<absl::StatusOr<ServerInfo>> done) {
  engine_.AssertEngineLock();
  if (absl::Status s = ValidateServerSpec(spec, engine_.options_); !s.ok()) {
    done(s);
    return;
  }
  if (absl::Status s = CheckServerName(spec.name, "name"); !s.ok()) {
    done(s);
    return;
  }
  // A name held already answers that server or replaces it: no new slot.
  if (engine_.registry_.listening_servers() >= engine_.options_.max_servers &&
      (spec.name.empty() ||
       engine_.registry_.FindListeningByName(spec.name) == nullptr)) {
    done(MaxServersError(engine_.options_.max_servers));
    return;
  }
  // Kept once, shared by the server and its history record.
  auto greeting =
      std::make_shared<const std::string>(std::move(spec.behavior.greeting));
  spec.behavior.greeting.clear();
  if (spec.transport == Transport::kUnix) {
    Server* replacing = nullptr;
    std::string difference;
    if (!ReadyToBind(spec, *greeting, done, &replacing, &difference)) return;
    // BindUnix checks the policy on the resolved path.
    std::unique_ptr<Server> s = NewServer(spec, engine_.options_, greeting);
    if (absl::Status st = BindUnix(*s, spec); !st.ok()) {
      done(ReplaceFailed(replacing, st));
      return;
    }
    Activate(
        std::move(s), std::move(done),
        replacing != nullptr ? StartOutcome::kReplaced : StartOutcome::kCreated,
        std::move(difference));
    return;
  }
  LookupQuery query;
  query.host = spec.bind.host;
  query.port = spec.bind.port;
  query.transport = spec.transport;
  query.family = spec.family;
  query.passive = true;
  engine_.connector_.Resolve(
      std::move(query), absl::InfiniteFuture(),
      [this, spec = std::move(spec), greeting = std::move(greeting),
       done = std::move(done)](absl::StatusOr<IpEndpoints> endpoints) mutable {
        engine_.AssertEngineLock();
        if (engine_.shutting_down_) {
          done(ShuttingDownError());
        } else if (!endpoints.ok()) {
          done(endpoints.status());
        } else {
          BindIp(std::move(spec), greeting, *endpoints, std::move(done));
        }
      });
}

void Servers::BindIp(ServerSpec spec,
                     const std::shared_ptr<const std::string>& greeting,
                     const IpEndpoints& endpoints,
                     Done<absl::StatusOr<ServerInfo>> done) {
  engine_.AssertEngineLock();
  // The policy sees resolved addresses and ports: a name or a service name
  // cannot hide a forbidden one. Any forbidden address refuses the server.
  for (const asio::ip::tcp::endpoint& e : endpoints) {
    if (absl::Status st = engine_.options_.policy.CheckBind(
            e.address().to_string(), e.port());
        !st.ok()) {
      done(st);
      return;
    }
  }
  // Names are settled here, under the lock with the bind: a server of the
  // same name may have started during the lookup.
  Server* replacing = nullptr;
  std::string difference;
  if (!ReadyToBind(spec, *greeting, done, &replacing, &difference)) return;
  const StartOutcome outcome =
      replacing != nullptr ? StartOutcome::kReplaced : StartOutcome::kCreated;
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Server> s = NewServer(spec, engine_.options_, greeting);
    bool retry = false;
    absl::Status status = BindAll(*s, spec, endpoints, &retry);
    // Only now is a port 0 known: a proxy to its own address would loop.
    if (status.ok())
      status = CheckProxyNotItself(spec, s->info.local_addresses);
    if (status.ok()) {
      Activate(std::move(s), std::move(done), outcome, std::move(difference));
      return;
    }
    if (!retry || attempt + 1 >= kMaxPortRetries) {
      done(ReplaceFailed(replacing, status));
      return;
    }
  }
}

absl::Status Servers::BindAll(Server& s, const ServerSpec& spec,
                              const IpEndpoints& endpoints, bool* retry) {
  engine_.AssertEngineLock();
  const bool any_zero = std::any_of(
      endpoints.begin(), endpoints.end(),
      [](const asio::ip::tcp::endpoint& e) { return e.port() == 0; });
  // "" with any family: a host without IPv6 still gets its IPv4 socket.
  const bool v6_optional =
      spec.bind.host.empty() && spec.family == Family::kUnspecified;
  uint16_t chosen = 0;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    asio::ip::tcp::endpoint ep = endpoints[i];
    if (ep.port() == 0 && chosen != 0) ep.port(chosen);
    const std::string where =
        ToSocketAddress(ep.address(), ep.port()).ToString();
    const bool v6 = ep.address().is_v6();
    asio::error_code ec;
    PackedAddress local;
    if (spec.transport == Transport::kTcp) {
      auto listener = std::make_unique<Listener>(engine_.io_);
      StreamAcceptor& a = listener->acceptor;
      a.open(StreamProtocol(ep.protocol()), ec);
      if (ec) {
        if (v6 && v6_optional &&
            ec == asio::error::address_family_not_supported) {
          continue;
        }
        return ErrorStatus(absl::StrCat("socket for ", where), ec);
      }
      if (spec.reuse_address) {
        a.set_option(asio::socket_base::reuse_address(true), ec);
        if (ec) return ErrorStatus(absl::StrCat("SO_REUSEADDR on ", where), ec);
      }
      if (v6) {
        // Dual stack is two sockets; [::] must not take the IPv4 port too.
        a.set_option(asio::ip::v6_only(true), ec);
        if (ec) return ErrorStatus(absl::StrCat("IPV6_V6ONLY on ", where), ec);
      }
      a.bind(StreamProtocol::endpoint(ep), ec);
      if (ec) {
        *retry = any_zero && chosen != 0 && ec == asio::error::address_in_use;
        return ErrorStatus(absl::StrCat("bind ", where), ec);
      }
      a.listen(s.info.backlog, ec);
      if (ec) return ErrorStatus(absl::StrCat("listen ", where), ec);
      a.non_blocking(true, ec);
      if (ec) return ErrorStatus(absl::StrCat("non-blocking ", where), ec);
      const StreamProtocol::endpoint bound = a.local_endpoint(ec);
      if (ec) return ErrorStatus(absl::StrCat("getsockname ", where), ec);
      local = PackedAddress::FromKernel(bound.data(), bound.size());
      if (!ep.address().is_unspecified()) listener->fixed_local = local;
      s.listeners.push_back(std::move(listener));
    } else {
      auto socket = std::make_unique<UdpServerSocket>(engine_.io_);
      UdpSocket& u = socket->socket;
      u.open(v6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), ec);
      if (ec) {
        if (v6 && v6_optional &&
            ec == asio::error::address_family_not_supported) {
          continue;
        }
        return ErrorStatus(absl::StrCat("socket for ", where), ec);
      }
      // No SO_REUSEADDR: on UDP it would let a second socket bind this
      // port and take a share of its datagrams.
      if (v6) {
        u.set_option(asio::ip::v6_only(true), ec);
        if (ec) return ErrorStatus(absl::StrCat("IPV6_V6ONLY on ", where), ec);
      }
      // Best effort: a smaller buffer only means earlier drops.
      u.set_option(
          asio::socket_base::receive_buffer_size(kUdpReceiveBufferBytes), ec);
      u.bind(asio::ip::udp::endpoint(ep.address(), ep.port()), ec);
      if (ec) {
        *retry = any_zero && chosen != 0 && ec == asio::error::address_in_use;
        return ErrorStatus(absl::StrCat("bind ", where), ec);
      }
      u.non_blocking(true, ec);
      if (ec) return ErrorStatus(absl::StrCat("non-blocking ", where), ec);
      const asio::ip::udp::endpoint bound = u.local_endpoint(ec);
      if (ec) return ErrorStatus(absl::StrCat("getsockname ", where), ec);
      local = PackedAddress::Ip(bound.address(), bound.port());
      socket->local = local;
      s.udp_sockets.push_back(std::move(socket));
    }
    if (chosen == 0) chosen = local.port();
    s.info.local_addresses.push_back(local.Unpack());
  }
  if (s.listeners.empty() && s.udp_sockets.empty()) {
    return absl::InvalidArgumentError("no address to bind");
  }
  return absl::OkStatus();
}

absl::Status Servers::BindUnix(Server& s, const ServerSpec& spec) {
  engine_.AssertEngineLock();
  const std::string& path = spec.bind.unix_path;
  const std::string where = absl::StrCat("unix:", path);
  auto listener = std::make_unique<Listener>(engine_.io_);
  StreamAcceptor& a = listener->acceptor;
  asio::error_code ec;
  a.open(StreamProtocol(AF_UNIX, 0), ec);
  if (ec) return ErrorStatus(absl::StrCat("socket for ", where), ec);
  // An existing file (stale or live) is AlreadyExists: we never unlink what
  // we did not create, except a dead socket when the caller asks for it.
  absl::StatusOr<std::unique_ptr<BoundUnixFile>> file =
      BindUnixSocket(a.native_handle(), path, engine_.options_.policy,
                     UnixBindOptions{.replace_stale = spec.replace_stale});
  if (!file.ok()) return file.status();
  // The file is ours now: a failure below must not leave it behind.
  absl::Cleanup remove_file = [&file] {
    if (*file != nullptr) (*file)->Unlink();
  };
  a.listen(s.info.backlog, ec);
  if (ec) return ErrorStatus(absl::StrCat("listen ", where), ec);
  a.non_blocking(true, ec);
  if (ec) return ErrorStatus(absl::StrCat("non-blocking ", where), ec);
  std::move(remove_file).Cancel();
  s.unix_file = *std::move(file);
  s.unix_path = std::make_shared<const std::string>(path);
  // What bind was given is /proc/self/fd/N/NAME: report the caller's path.
  listener->fixed_local = PackedAddress::Unix(s.unix_path);
  s.info.local_addresses.push_back(listener->fixed_local->Unpack());
  s.listeners.push_back(std::move(listener));
  return absl::OkStatus();
}

bool Servers::ReadyToBind(const ServerSpec& spec, absl::string_view greeting,
                          Done<absl::StatusOr<ServerInfo>>& done,
                          Server** replacing, std::string* difference) {
  engine_.AssertEngineLock();
  if (SettleName(spec, greeting, done, replacing, difference)) return false;
  // Checked again: other servers may have started during a lookup.
  if (*replacing == nullptr &&
      engine_.registry_.listening_servers() >= engine_.options_.max_servers) {
    done(MaxServersError(engine_.options_.max_servers));
    return false;
  }
  if (absl::Status st = CheckMetricsSlot(spec, engine_.registry_, *replacing,
                                         engine_.options_.max_metrics_servers);
      !st.ok()) {
    done(st);
    return false;
  }
  if (*replacing != nullptr) {
    Stop(**replacing, "replaced by StartServer", CloseReason::kServerStopped,
         nullptr);
  }
  return true;
}

bool Servers::SettleName(const ServerSpec& spec, absl::string_view greeting,
                         Done<absl::StatusOr<ServerInfo>>& done,
                         Server** replacing, std::string* difference) {
  engine_.AssertEngineLock();
  *replacing = nullptr;
  Server* held = spec.name.empty()
                     ? nullptr
                     : engine_.registry_.FindListeningByName(spec.name);
  if (held != nullptr) {
    const std::string empty;
    *difference = SpecDifference(
        *held->info.requested, held->info,
        held->greeting != nullptr ? *held->greeting : empty, [&] {
          ServerSpec s = spec;
          s.behavior.greeting = std::string(greeting);
          return s;
        }());
    if (difference->empty()) {
      ServerInfo info = Snapshot(*held);
      info.start_outcome = StartOutcome::kUnchanged;
      done(std::move(info));
      return true;
    }
    if (!spec.replace) {
      done(absl::AlreadyExistsError(
          absl::StrCat("server name ", QuoteInput(spec.name), " is taken by ",
                       held->info.id, ", whose spec differs (", *difference,
                       "): set replace to replace it, or stop it first")));
      return true;
    }
    *replacing = held;
  }
  if (spec.dry_run) {
    ServerInfo info;
    if (held != nullptr) {
      info = Snapshot(*held);
      info.start_outcome = StartOutcome::kReplaced;
      info.start_difference = *difference;
    } else {
      // What the server would be, as far as it is known before binding
      // (no id, no addresses).
      info.name = spec.name;
      info.transport = spec.transport;
      info.labels = spec.labels;
      info.stopped_at = absl::InfinitePast();
    }
    done(std::move(info));
    return true;
  }
  return false;
}

void Servers::Activate(std::unique_ptr<Server> server,
                       Done<absl::StatusOr<ServerInfo>> done,
                       StartOutcome outcome, std::string difference) {
  engine_.AssertEngineLock();
  Server& s = engine_.registry_.AddServer(std::move(server));
  s.info.id = ServerId(s.num);
  s.info.state = ServerState::kListening;
  s.info.created_at = absl::Now();
  for (size_t i = 0; i < s.listeners.size(); ++i) ArmAccept(s, i);
  for (size_t i = 0; i < s.udp_sockets.size(); ++i) engine_.udp_.ArmRead(s, i);
  if (s.info.ttl > absl::ZeroDuration()) {
    s.ttl_timer = std::make_unique<Timer>(engine_.io_, ToSteady(s.info.ttl));
    s.ttl_timer->async_wait(
        engine_.Locked([this, num = s.num](const asio::error_code& ec) {
          engine_.AssertEngineLock();
          if (ec) return;
          Server* found = engine_.registry_.FindServer(num);
          if (found == nullptr || found->stopped()) return;
          Stop(*found, "ttl expired", CloseReason::kTtlExpired, nullptr);
        }));
  }
  engine_.Emit(EventKind::kServerStarted, s.num, 0);
  ServerInfo info = Snapshot(s);
  info.start_outcome = outcome;
  info.start_difference = std::move(difference);
  done(std::move(info));
}

void Servers::Stop(Server& s, absl::string_view reason, CloseReason conn_reason,
                   uint64_t* closed) {
  engine_.AssertEngineLock();
  if (s.stopped()) return;
  s.info.state = ServerState::kStopped;
  s.info.stopped_at = absl::Now();
  s.info.stop_reason = std::string(reason);
  engine_.registry_.ServerStopped(s.num);
  asio::error_code ec;
  // Handlers still queued for these sockets see stopped() and return before
  // touching the (now empty) vectors.
  for (auto& listener : s.listeners) listener->acceptor.close(ec);
  s.listeners.clear();
  // UDP peer sessions live on the server's sockets: they end with them.
  const auto sessions = s.sessions;
  for (const auto& [key, num] : sessions) {
    if (Conn* c = engine_.registry_.FindConn(num)) {
      engine_.closer_.StartClose(*c, conn_reason, "", /*abort=*/false);
      if (closed != nullptr) ++*closed;
    }
  }
  for (auto& socket : s.udp_sockets) {
    for (; !socket->out.empty(); socket->out.pop_front()) {
      if (Conn* c = engine_.registry_.FindConn(socket->out.front().conn_num)) {
        const uint64_t size = socket->out.front().data.size();
        c->counters.send_buffered -= size;
        c->counters.send_bytes_lost += size;
        --c->Extra().out_datagrams;
        engine_.ledger_.Recharge(*c);
      }
    }
    socket->socket.close(ec);
  }
  s.udp_sockets.clear();
  // Only the socket this server bound, and only while it is still there.
  if (s.unix_file != nullptr) {
    s.unix_file->Unlink();
    s.unix_file.reset();
  }
  s.ttl_timer.reset();
  engine_.ledger_.ScheduleTrim();
  engine_.Emit(EventKind::kServerStopped, s.num, 0);
}

void Servers::StopMatching(const Selector& selector, bool close_connections,
                           Done<absl::StatusOr<StopResult>> done) {
  engine_.AssertEngineLock();
  if (absl::Status s = CheckSelector(selector); !s.ok()) {
    done(s);
    return;
  }
  std::vector<Server*> targets;
  if (!selector.name.empty()) {
    Server* s = engine_.registry_.FindListeningByName(selector.name);
    if (s == nullptr) {
      done(absl::NotFoundError(absl::StrCat("no listening server is named ",
                                            QuoteInput(selector.name))));
      return;
    }
    targets.push_back(s);
  } else if (!selector.id.empty()) {
    std::optional<uint64_t> num = ParseId(selector.id, "srv-");
    Server* s = num.has_value() ? engine_.registry_.FindServer(*num) : nullptr;
    if (s == nullptr) {
      done(absl::NotFoundError(
          absl::StrCat("server ", QuoteInput(selector.id), " not found")));
      return;
    }
    targets.push_back(s);
  } else {
    for (auto& [num, s] : engine_.registry_.servers()) {
      if (!s->stopped() && LabelsMatch(s->labels, selector.labels)) {
        targets.push_back(s.get());
      }
    }
  }
  StopResult result;
  absl::flat_hash_set<uint64_t> stopped;
  for (Server* s : targets) {
    if (!s->stopped()) stopped.insert(s->num);
    Stop(*s, "stopped by request", CloseReason::kServerStopped,
         &result.connections_closed);
  }
  if (close_connections && !stopped.empty()) {
    // One pass over the connections for all the servers.
    for (auto& [num, c] : engine_.registry_.conns()) {
      if (c->state != ConnectionState::kClosed &&
          stopped.contains(c->server_num)) {
        engine_.closer_.StartClose(*c, CloseReason::kServerStopped, "",
                                   /*abort=*/false);
        ++result.connections_closed;
      }
    }
  }
  result.servers_stopped = targets.size();
  const size_t listed = std::min(targets.size(), kMaxListedResults);
  for (size_t i = 0; i < listed; ++i) {
    result.servers.push_back(Snapshot(*targets[i]));
  }
  done(std::move(result));
}

}  // namespace engine_internal
}  // namespace sockagent
