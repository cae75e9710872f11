// Servers between the API and the engine: StartServerRequest to ServerSpec
// (validation naming each field), the engine's ServerInfo to Server (with
// the spec a listing carries, so a listing is a desired-state file), and
// the server selectors (service/convert.h).
#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "service/convert.h"

namespace sockagent {

absl::StatusOr<Endpoint> EndpointFromProto(const v1::Endpoint& endpoint,
                                           absl::string_view field) {
  Endpoint out;
  out.host = endpoint.host();
  out.unix_path = endpoint.unix_path();
  switch (endpoint.port_spec_case()) {
    case v1::Endpoint::kPort:
      if (endpoint.port() > 65535) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".port ", endpoint.port(), " is out of range 0..65535"));
      }
      out.port = absl::StrCat(endpoint.port());
      break;
    case v1::Endpoint::kService:
      if (endpoint.service().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".service is empty"));
      }
      out.port = endpoint.service();
      break;
    case v1::Endpoint::PORT_SPEC_NOT_SET:
      break;
  }
  return out;
}

absl::StatusOr<ServerSpec> ServerSpecFromProto(
    const v1::StartServerRequest& request,
    const std::vector<std::string>& tls_path_dirs) {
  ServerSpec spec;
  auto transport = TransportFromProto(request.transport());
  if (!transport.ok()) return transport.status();
  auto bind = EndpointFromProto(request.bind(), "bind");
  if (!bind.ok()) return bind.status();
  auto family = FamilyFromProto(request.family());
  if (!family.ok()) return family.status();
  auto ttl = DurationFromProto(request.ttl(), "ttl");
  if (!ttl.ok()) return ttl.status();
  auto idle = DurationFromProto(request.idle_timeout(), "idle_timeout");
  if (!idle.ok()) return idle.status();
  auto session_idle = DurationFromProto(request.udp().session_idle_timeout(),
                                        "udp.session_idle_timeout");
  if (!session_idle.ok()) return session_idle.status();
  if (request.backlog() < 0) {
    return absl::InvalidArgumentError("backlog must not be negative");
  }
  spec.transport = *transport;
  spec.bind = *std::move(bind);
  spec.family = *family;
  spec.backlog = request.backlog();
  spec.reuse_address =
      request.has_reuse_address() ? request.reuse_address() : true;
  spec.replace_stale = request.replace_stale();
  const v1::Behavior& behavior = request.behavior();
  switch (behavior.kind_case()) {
    case v1::Behavior::kEcho:
      spec.behavior.kind = BehaviorKind::kEcho;
      break;
    case v1::Behavior::kGreeting:
      spec.behavior.kind = BehaviorKind::kGreeting;
      spec.behavior.greeting = behavior.greeting().data();
      spec.behavior.close_after_greeting = behavior.greeting().close_after();
      break;
    case v1::Behavior::kDiscard:
      spec.behavior.kind = BehaviorKind::kDiscard;
      break;
    case v1::Behavior::kProxy: {
      spec.behavior.kind = BehaviorKind::kProxy;
      auto upstream = EndpointFromProto(behavior.proxy().upstream(),
                                        "behavior.proxy.upstream");
      if (!upstream.ok()) return upstream.status();
      spec.behavior.proxy_upstream = *std::move(upstream);
      if (behavior.proxy().transport() != v1::TRANSPORT_UNSPECIFIED) {
        auto up_transport = TransportFromProto(behavior.proxy().transport());
        if (!up_transport.ok()) return up_transport.status();
        spec.behavior.proxy_transport = *up_transport;
      }
      if (behavior.proxy().has_tls()) {
        auto tls = TlsClientFromProto(behavior.proxy().tls(),
                                      spec.behavior.proxy_upstream.host);
        if (!tls.ok()) {
          return absl::Status(
              tls.status().code(),
              absl::StrCat("behavior.proxy.", tls.status().message()));
        }
        spec.behavior.proxy_tls = *std::move(tls);
      }
      break;
    }
    case v1::Behavior::kHold:
    case v1::Behavior::KIND_NOT_SET:
      spec.behavior.kind = BehaviorKind::kHold;
      break;
  }
  spec.labels = LabelsFromProto(request.labels());
  spec.ttl = *ttl;
  spec.idle_timeout = *idle;
  spec.udp_max_sessions = request.udp().max_sessions();
  spec.udp_session_idle_timeout = *session_idle;
  spec.udp_reply.datagrams_per_sec = request.udp().reply_datagrams_per_sec();
  spec.udp_reply.bytes_per_sec = request.udp().reply_bytes_per_sec();
  spec.udp_reply.peer_ratio = request.udp().reply_peer_ratio();
  spec.udp_reply.peer_grant_bytes = request.udp().reply_peer_grant_bytes();
  spec.name = request.name();
  spec.metrics = request.metrics();
  spec.replace = request.replace();
  spec.dry_run = request.dry_run();
  if (spec.behavior.proxy_tls != nullptr &&
      spec.behavior.proxy_transport.value_or(spec.transport) ==
          Transport::kUdp) {
    return absl::InvalidArgumentError(
        "behavior.proxy.tls: UDP has no TLS here (no DTLS); use TCP or UNIX");
  }
  if (request.has_tls()) {
    if (spec.transport == Transport::kUdp) {
      return absl::InvalidArgumentError(
          "tls: UDP has no TLS here (no DTLS); use TCP or UNIX");
    }
    auto tls = TlsServerFromProto(request.tls(), tls_path_dirs);
    if (!tls.ok()) return tls.status();
    spec.tls = *std::move(tls);
  }
  return spec;
}

v1::StartOutcome StartOutcomeToProto(StartOutcome outcome) {
  switch (outcome) {
    case StartOutcome::kCreated:
      return v1::START_OUTCOME_CREATED;
    case StartOutcome::kUnchanged:
      return v1::START_OUTCOME_UNCHANGED;
    case StartOutcome::kReplaced:
      return v1::START_OUTCOME_REPLACED;
  }
  return v1::START_OUTCOME_UNSPECIFIED;
}

absl::StatusOr<Selector> ServerSelectorFromProto(
    const v1::StopServerRequest& request) {
  if (request.name().empty()) {
    return SelectorFromProto(request.id(), request.label_selector());
  }
  if (!request.id().empty() || !request.label_selector().empty()) {
    return absl::InvalidArgumentError(
        "give one of id, name or label_selector, not several");
  }
  Selector selector;
  selector.name = request.name();
  return selector;
}

namespace {

v1::ServerState ServerStateToProto(ServerState state) {
  switch (state) {
    case ServerState::kListening:
      return v1::SERVER_STATE_LISTENING;
    case ServerState::kStopped:
      return v1::SERVER_STATE_STOPPED;
  }
  return v1::SERVER_STATE_UNSPECIFIED;
}

}  // namespace

namespace {

// A proxy behaviour's upstream and transport, for listings and specs.
void ProxyToProto(const Behavior& in, v1::ProxyBehavior* proxy) {
  const Endpoint& up = in.proxy_upstream;
  proxy->mutable_upstream()->set_host(up.host);
  proxy->mutable_upstream()->set_unix_path(up.unix_path);
  if (!up.port.empty()) {
    uint32_t port = 0;
    if (absl::SimpleAtoi(up.port, &port)) {
      proxy->mutable_upstream()->set_port(port);
    } else {
      proxy->mutable_upstream()->set_service(up.port);
    }
  }
  if (in.proxy_tls != nullptr) {
    TlsClientSpecToProto(in.proxy_tls->spec(), proxy->mutable_tls());
  }
  if (in.proxy_transport.has_value()) {
    proxy->set_transport(TransportToProto(*in.proxy_transport));
  }
}

// A server's behavior; `greeting`: the greeting to report (a Server's spec
// carries the bounded one of its listing).
void BehaviorToProto(const Behavior& in, absl::string_view greeting,
                     v1::Behavior* out) {
  switch (in.kind) {
    case BehaviorKind::kHold:
      out->mutable_hold();
      break;
    case BehaviorKind::kEcho:
      out->mutable_echo();
      break;
    case BehaviorKind::kGreeting:
      out->mutable_greeting()->set_data(std::string(greeting));
      out->mutable_greeting()->set_close_after(in.close_after_greeting);
      break;
    case BehaviorKind::kDiscard:
      out->mutable_discard();
      break;
    case BehaviorKind::kProxy:
      ProxyToProto(in, out->mutable_proxy());
      break;
  }
}

// The inverse of ServerSpecFromProto, for Server.spec. `greeting` is the
// (bounded) greeting the listing carries: the spec's own is moved out.
void ServerSpecToProto(const ServerSpec& in, absl::string_view greeting,
                       v1::StartServerRequest* out) {
  out->set_transport(TransportToProto(in.transport));
  v1::Endpoint* bind = out->mutable_bind();
  if (!in.bind.unix_path.empty()) bind->set_unix_path(in.bind.unix_path);
  if (!in.bind.host.empty()) bind->set_host(in.bind.host);
  uint32_t port = 0;
  if (absl::SimpleAtoi(in.bind.port, &port) && port <= 65535) {
    if (port != 0) bind->set_port(port);
  } else if (!in.bind.port.empty()) {
    bind->set_service(in.bind.port);
  }
  if (in.family != Family::kUnspecified) {
    out->set_family(FamilyToProto(in.family));
  }
  out->set_backlog(in.backlog);
  if (!in.reuse_address) out->set_reuse_address(false);
  BehaviorToProto(in.behavior, greeting, out->mutable_behavior());
  LabelsToProto(in.labels, out->mutable_labels());
  if (in.ttl > absl::ZeroDuration())
    DurationToProto(in.ttl, out->mutable_ttl());
  if (in.idle_timeout > absl::ZeroDuration()) {
    DurationToProto(in.idle_timeout, out->mutable_idle_timeout());
  }
  if (in.transport == Transport::kUdp) {
    v1::UdpServerOptions* udp = out->mutable_udp();
    udp->set_max_sessions(in.udp_max_sessions);
    if (in.udp_session_idle_timeout > absl::ZeroDuration()) {
      DurationToProto(in.udp_session_idle_timeout,
                      udp->mutable_session_idle_timeout());
    }
    udp->set_reply_datagrams_per_sec(in.udp_reply.datagrams_per_sec);
    udp->set_reply_bytes_per_sec(in.udp_reply.bytes_per_sec);
    udp->set_reply_peer_ratio(in.udp_reply.peer_ratio);
    udp->set_reply_peer_grant_bytes(in.udp_reply.peer_grant_bytes);
  }
  if (in.tls != nullptr) {
    TlsServerSpecToProto(in.tls->spec(), out->mutable_tls());
  }
  out->set_metrics(in.metrics);
  out->set_name(in.name);
}

}  // namespace

void ServerInfoToProto(const ServerInfo& in, v1::Server* out) {
  out->set_id(in.id);
  out->set_name(in.name);
  if (in.requested != nullptr) {
    ServerSpecToProto(*in.requested, in.behavior.greeting, out->mutable_spec());
  }
  out->set_transport(TransportToProto(in.transport));
  for (const auto& address : in.local_addresses) {
    SocketAddressToProto(address, out->add_local_addresses());
  }
  BehaviorToProto(in.behavior, in.behavior.greeting, out->mutable_behavior());
  out->set_state(ServerStateToProto(in.state));
  v1::ServerCounters* c = out->mutable_counters();
  c->set_connections_accepted(in.counters.connections_accepted);
  c->set_connections_active(in.counters.connections_active);
  c->set_connections_rejected(in.counters.connections_rejected);
  c->set_bytes_received(in.counters.bytes_received);
  c->set_bytes_sent(in.counters.bytes_sent);
  c->set_datagrams_received(in.counters.datagrams_received);
  c->set_datagrams_sent(in.counters.datagrams_sent);
  c->set_datagrams_dropped(in.counters.datagrams_dropped);
  c->set_replies_dropped(in.counters.replies_dropped);
  c->set_reply_bytes_dropped(in.counters.reply_bytes_dropped);
  LabelsToProto(in.labels, out->mutable_labels());
  out->set_backlog(in.backlog);
  TimeToProto(in.created_at, out->mutable_created_at());
  if (in.state == ServerState::kStopped) {
    TimeToProto(in.stopped_at, out->mutable_stopped_at());
  }
  if (in.ttl > absl::ZeroDuration())
    DurationToProto(in.ttl, out->mutable_ttl());
  if (in.idle_timeout > absl::ZeroDuration()) {
    DurationToProto(in.idle_timeout, out->mutable_idle_timeout());
  }
  if (in.transport == Transport::kUdp) {
    out->mutable_udp()->set_max_sessions(in.udp_max_sessions);
    DurationToProto(in.udp_session_idle_timeout,
                    out->mutable_udp()->mutable_session_idle_timeout());
    v1::UdpServerOptions* udp = out->mutable_udp();
    udp->set_reply_datagrams_per_sec(in.udp_reply.datagrams_per_sec);
    udp->set_reply_bytes_per_sec(in.udp_reply.bytes_per_sec);
    udp->set_reply_peer_ratio(in.udp_reply.peer_ratio);
    udp->set_reply_peer_grant_bytes(in.udp_reply.peer_grant_bytes);
  }
  out->set_stop_reason(in.stop_reason);
  out->set_greeting_bytes(in.greeting_bytes);
  c->set_tls_handshakes(in.counters.tls_handshakes);
  c->set_tls_handshake_failures(in.counters.tls_handshake_failures);
  if (in.tls != nullptr) TlsServerInfoToProto(*in.tls, out->mutable_tls());
  out->set_metrics(in.metrics);
}

}  // namespace sockagent
