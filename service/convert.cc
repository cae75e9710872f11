#include "service/convert.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sockagent {

Labels LabelsFromProto(
    const google::protobuf::Map<std::string, std::string>& labels) {
  return Labels(labels.begin(), labels.end());
}

void LabelsToProto(const Labels& labels,
                   google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& [key, value] : labels) (*out)[key] = value;
}

namespace {

absl::Status UnknownEnum(absl::string_view what, int value) {
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ", what, " value ", value));
}

constexpr int64_t kMaxDurationSeconds = 10LL * 365 * 24 * 3600;  // 10 years.

}  // namespace

absl::StatusOr<Family> FamilyFromProto(v1::Family family) {
  switch (family) {
    case v1::FAMILY_UNSPECIFIED:
      return Family::kUnspecified;
    case v1::FAMILY_IPV4:
      return Family::kIpv4;
    case v1::FAMILY_IPV6:
      return Family::kIpv6;
    case v1::FAMILY_UNIX:
      return Family::kUnix;
    default:
      return UnknownEnum("family", family);
  }
}

v1::Family FamilyToProto(Family family) {
  switch (family) {
    case Family::kIpv4:
      return v1::FAMILY_IPV4;
    case Family::kIpv6:
      return v1::FAMILY_IPV6;
    case Family::kUnix:
      return v1::FAMILY_UNIX;
    case Family::kUnspecified:
      break;
  }
  return v1::FAMILY_UNSPECIFIED;
}

absl::StatusOr<SocketType> SocketTypeFromProto(v1::SocketType type) {
  switch (type) {
    case v1::SOCKET_TYPE_UNSPECIFIED:
      return SocketType::kUnspecified;
    case v1::SOCKET_TYPE_STREAM:
      return SocketType::kStream;
    case v1::SOCKET_TYPE_DGRAM:
      return SocketType::kDgram;
    case v1::SOCKET_TYPE_RAW:
      return SocketType::kRaw;
    default:
      return UnknownEnum("socket type", type);
  }
}

v1::SocketType SocketTypeToProto(SocketType type) {
  switch (type) {
    case SocketType::kStream:
      return v1::SOCKET_TYPE_STREAM;
    case SocketType::kDgram:
      return v1::SOCKET_TYPE_DGRAM;
    case SocketType::kRaw:
      return v1::SOCKET_TYPE_RAW;
    case SocketType::kUnspecified:
      break;
  }
  return v1::SOCKET_TYPE_UNSPECIFIED;
}

void SocketAddressToProto(const SocketAddress& in, v1::SocketAddress* out) {
  out->set_family(FamilyToProto(in.family));
  out->set_ip(in.ip);
  out->set_port(in.port);
  out->set_unix_path(in.unix_path);
}

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

void DurationToProto(absl::Duration d, google::protobuf::Duration* out) {
  if (d == absl::InfiniteDuration()) return;
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

absl::StatusOr<absl::Duration> DurationFromProto(
    const google::protobuf::Duration& d, absl::string_view field) {
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() > 999999999) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must not be negative"));
  }
  if (d.seconds() > kMaxDurationSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is longer than 10 years"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::StatusOr<ResolveQuery> ResolveQueryFromProto(
    const v1::ResolveRequest& request) {
  ResolveQuery query;
  auto family = FamilyFromProto(request.family());
  if (!family.ok()) return family.status();
  auto type = SocketTypeFromProto(request.socket_type());
  if (!type.ok()) return type.status();
  query.host = request.host();
  query.service = request.service();
  query.family = *family;
  query.socket_type = *type;
  query.canonical_name = request.canonical_name();
  query.numeric_host = request.numeric_host();
  query.numeric_service = request.numeric_service();
  query.passive = request.passive();
  query.address_config = request.address_config();
  return query;
}

void AddressEntryToProto(const AddressEntry& in, v1::AddressInfo* out) {
  out->set_family(FamilyToProto(in.family));
  out->set_socket_type(SocketTypeToProto(in.socket_type));
  out->set_protocol(in.protocol);
  out->set_protocol_name(in.protocol_name);
  out->set_canonical_name(in.canonical_name);
  out->set_address(in.address);
  out->set_port(in.port);
}

absl::StatusOr<Transport> TransportFromProto(v1::Transport transport) {
  switch (transport) {
    case v1::TRANSPORT_UNSPECIFIED:
    case v1::TRANSPORT_TCP:
      return Transport::kTcp;
    case v1::TRANSPORT_UDP:
      return Transport::kUdp;
    case v1::TRANSPORT_UNIX:
      return Transport::kUnix;
    default:
      return UnknownEnum("transport", transport);
  }
}

v1::Transport TransportToProto(Transport transport) {
  switch (transport) {
    case Transport::kTcp:
      return v1::TRANSPORT_TCP;
    case Transport::kUdp:
      return v1::TRANSPORT_UDP;
    case Transport::kUnix:
      return v1::TRANSPORT_UNIX;
  }
  return v1::TRANSPORT_UNSPECIFIED;
}

absl::StatusOr<ClientSpec> ClientSpecFromProto(
    const v1::OpenClientRequest& request) {
  ClientSpec spec;
  auto transport = TransportFromProto(request.transport());
  if (!transport.ok()) return transport.status();
  auto remote = EndpointFromProto(request.remote(), "remote");
  if (!remote.ok()) return remote.status();
  auto source = EndpointFromProto(request.source(), "source");
  if (!source.ok()) return source.status();
  auto family = FamilyFromProto(request.family());
  if (!family.ok()) return family.status();
  auto timeout =
      DurationFromProto(request.connect_timeout(), "connect_timeout");
  if (!timeout.ok()) return timeout.status();
  auto ttl = DurationFromProto(request.ttl(), "ttl");
  if (!ttl.ok()) return ttl.status();
  auto idle = DurationFromProto(request.idle_timeout(), "idle_timeout");
  if (!idle.ok()) return idle.status();
  auto ka_idle =
      DurationFromProto(request.keepalive().idle(), "keepalive.idle");
  if (!ka_idle.ok()) return ka_idle.status();
  auto ka_interval =
      DurationFromProto(request.keepalive().interval(), "keepalive.interval");
  if (!ka_interval.ok()) return ka_interval.status();
  spec.transport = *transport;
  spec.remote = *std::move(remote);
  spec.source = *std::move(source);
  spec.family = *family;
  spec.connect_timeout = *timeout;
  spec.tcp_nodelay = request.tcp_nodelay();
  spec.keepalive = request.keepalive().enable();
  spec.keepalive_idle = *ka_idle;
  spec.keepalive_interval = *ka_interval;
  spec.keepalive_count = request.keepalive().count();
  spec.labels = LabelsFromProto(request.labels());
  spec.ttl = *ttl;
  spec.idle_timeout = *idle;
  if (request.has_tls()) {
    if (spec.transport == Transport::kUdp) {
      return absl::InvalidArgumentError(
          "tls: UDP has no TLS here (no DTLS); use TCP or UNIX");
    }
    auto tls = TlsClientFromProto(request.tls(), spec.remote.host);
    if (!tls.ok()) return tls.status();
    spec.tls = *std::move(tls);
  }
  return spec;
}

v1::CloseReason CloseReasonToProto(CloseReason reason) {
  switch (reason) {
    case CloseReason::kNone:
      return v1::CLOSE_REASON_UNSPECIFIED;
    case CloseReason::kLocalClose:
      return v1::CLOSE_REASON_LOCAL_CLOSE;
    case CloseReason::kLocalAbort:
      return v1::CLOSE_REASON_LOCAL_ABORT;
    case CloseReason::kPeerClosed:
      return v1::CLOSE_REASON_PEER_CLOSED;
    case CloseReason::kPeerReset:
      return v1::CLOSE_REASON_PEER_RESET;
    case CloseReason::kIdleTimeout:
      return v1::CLOSE_REASON_IDLE_TIMEOUT;
    case CloseReason::kTtlExpired:
      return v1::CLOSE_REASON_TTL_EXPIRED;
    case CloseReason::kServerStopped:
      return v1::CLOSE_REASON_SERVER_STOPPED;
    case CloseReason::kStreamEnded:
      return v1::CLOSE_REASON_STREAM_ENDED;
    case CloseReason::kError:
      return v1::CLOSE_REASON_ERROR;
    case CloseReason::kAgentShutdown:
      return v1::CLOSE_REASON_AGENT_SHUTDOWN;
  }
  return v1::CLOSE_REASON_UNSPECIFIED;
}

namespace {

v1::ConnectionState ConnectionStateToProto(ConnectionState state) {
  switch (state) {
    case ConnectionState::kOpen:
      return v1::CONNECTION_STATE_OPEN;
    case ConnectionState::kPeerClosed:
      return v1::CONNECTION_STATE_PEER_CLOSED;
    case ConnectionState::kLocalClosed:
      return v1::CONNECTION_STATE_LOCAL_CLOSED;
    case ConnectionState::kClosed:
      return v1::CONNECTION_STATE_CLOSED;
  }
  return v1::CONNECTION_STATE_UNSPECIFIED;
}

absl::StatusOr<ConnectionState> ConnectionStateFromProto(int state) {
  switch (state) {
    case v1::CONNECTION_STATE_OPEN:
      return ConnectionState::kOpen;
    case v1::CONNECTION_STATE_PEER_CLOSED:
      return ConnectionState::kPeerClosed;
    case v1::CONNECTION_STATE_LOCAL_CLOSED:
      return ConnectionState::kLocalClosed;
    case v1::CONNECTION_STATE_CLOSED:
      return ConnectionState::kClosed;
    default:
      return UnknownEnum("connection state", state);
  }
}

v1::Origin OriginToProto(Origin origin) {
  switch (origin) {
    case Origin::kOpened:
      return v1::ORIGIN_OPENED;
    case Origin::kAccepted:
      return v1::ORIGIN_ACCEPTED;
    case Origin::kUdpPeer:
      return v1::ORIGIN_UDP_PEER;
    case Origin::kProxyUpstream:
      return v1::ORIGIN_PROXY_UPSTREAM;
  }
  return v1::ORIGIN_UNSPECIFIED;
}

}  // namespace

void PerfReceiveStatsToProto(const PerfReceiveStats& in,
                             v1::PerfReceiveStats* out) {
  out->set_run_id(in.run_id);
  out->set_datagrams(in.datagrams);
  out->set_bytes(in.bytes);
  out->set_highest_sequence(in.highest_sequence);
  out->set_lost(in.lost);
  out->set_out_of_order(in.out_of_order);
  DurationToProto(in.jitter, out->mutable_jitter());
  TimeToProto(in.first_at, out->mutable_first_at());
  TimeToProto(in.last_at, out->mutable_last_at());
}

namespace {

void ConnectionToProto(const ConnectionInfo& in, bool full,
                       v1::Connection* out) {
  out->set_id(in.id);
  out->set_transport(TransportToProto(in.transport));
  SocketAddressToProto(in.local, out->mutable_local());
  SocketAddressToProto(in.remote, out->mutable_remote());
  out->set_origin(OriginToProto(in.origin));
  out->set_server_id(in.server_id);
  out->set_peer_connection_id(in.peer_connection_id);
  out->set_state(ConnectionStateToProto(in.state));
  out->set_close_reason(CloseReasonToProto(in.close_reason));
  out->set_close_detail(in.close_detail);
  v1::ConnectionCounters* c = out->mutable_counters();
  c->set_bytes_received(in.counters.bytes_received);
  c->set_bytes_sent(in.counters.bytes_sent);
  c->set_datagrams_received(in.counters.datagrams_received);
  c->set_datagrams_sent(in.counters.datagrams_sent);
  c->set_datagrams_dropped(in.counters.datagrams_dropped);
  c->set_recv_buffered(in.counters.recv_buffered);
  c->set_recv_buffered_peak(in.counters.recv_buffered_peak);
  c->set_send_buffered(in.counters.send_buffered);
  c->set_send_buffered_peak(in.counters.send_buffered_peak);
  c->set_send_bytes_lost(in.counters.send_bytes_lost);
  c->set_fault_datagrams_dropped(in.fault_datagrams_dropped);
  c->set_fault_datagrams_duplicated(in.fault_datagrams_duplicated);
  c->set_fault_datagrams_delayed(in.fault_datagrams_delayed);
  c->set_fault_received_held(in.fault_received_held);
  LabelsToProto(in.labels, out->mutable_labels());
  TimeToProto(in.opened_at, out->mutable_opened_at());
  if (in.state == ConnectionState::kClosed) {
    TimeToProto(in.closed_at, out->mutable_closed_at());
  }
  if (in.ttl > absl::ZeroDuration())
    DurationToProto(in.ttl, out->mutable_ttl());
  if (in.idle_timeout > absl::ZeroDuration()) {
    DurationToProto(in.idle_timeout, out->mutable_idle_timeout());
  }
  out->set_stream_attached(in.stream_attached);
  for (const std::string& f : in.faults) out->add_faults(f);
  if (in.tls != nullptr || in.tls_handshaking) {
    TlsInfoToProto(in.tls.get(), in.tls_handshaking, full, out->mutable_tls());
  }
  if (in.perf.has_value()) {
    PerfReceiveStatsToProto(*in.perf, out->mutable_perf());
  }
}

}  // namespace

void ConnectionInfoToProto(const ConnectionInfo& in, v1::Connection* out) {
  ConnectionToProto(in, /*full=*/false, out);
}

void FullConnectionInfoToProto(const ConnectionInfo& in, v1::Connection* out) {
  ConnectionToProto(in, /*full=*/true, out);
}

absl::StatusOr<Selector> SelectorFromProto(
    const std::string& id,
    const google::protobuf::Map<std::string, std::string>& labels) {
  if (id.empty() && labels.empty()) {
    return absl::InvalidArgumentError(
        "give an id or a non-empty label selector");
  }
  if (!id.empty() && !labels.empty()) {
    return absl::InvalidArgumentError(
        "give an id or a label selector, not both");
  }
  return Selector{id, LabelsFromProto(labels)};
}

absl::StatusOr<ConnectionFilter> ConnectionFilterFromProto(
    const v1::ListConnectionsRequest& request) {
  ConnectionFilter filter;
  filter.id = request.id();
  filter.server_id = request.server_id();
  filter.selector = LabelsFromProto(request.label_selector());
  for (int state : request.states()) {
    auto s = ConnectionStateFromProto(state);
    if (!s.ok()) return s.status();
    filter.states.push_back(*s);
  }
  if (request.transport() != v1::TRANSPORT_UNSPECIFIED) {
    auto transport = TransportFromProto(request.transport());
    if (!transport.ok()) return transport.status();
    filter.transport = *transport;
  }
  filter.include_closed = request.include_closed();
  filter.page_size = request.page_size();
  filter.page_token = request.page_token();
  return filter;
}

absl::StatusOr<ServerFilter> ServerFilterFromProto(
    const v1::ListServersRequest& request) {
  ServerFilter filter;
  filter.selector = LabelsFromProto(request.label_selector());
  if (request.transport() != v1::TRANSPORT_UNSPECIFIED) {
    auto transport = TransportFromProto(request.transport());
    if (!transport.ok()) return transport.status();
    filter.transport = *transport;
  }
  filter.include_stopped = request.include_stopped();
  filter.page_size = request.page_size();
  filter.page_token = request.page_token();
  return filter;
}

absl::StatusOr<CloseMode> CloseModeFromProto(v1::CloseMode mode) {
  switch (mode) {
    case v1::CLOSE_MODE_UNSPECIFIED:
    case v1::CLOSE_MODE_GRACEFUL:
      return CloseMode::kGraceful;
    case v1::CLOSE_MODE_ABORT:
      return CloseMode::kAbort;
    case v1::CLOSE_MODE_SHUTDOWN_WRITE:
      return CloseMode::kShutdownWrite;
    default:
      return UnknownEnum("close mode", mode);
  }
}

absl::StatusOr<EngineEventKind> EventKindFromProto(int kind) {
  switch (kind) {
    case v1::EVENT_KIND_SERVER_STARTED:
      return EngineEventKind::kServerStarted;
    case v1::EVENT_KIND_SERVER_STOPPED:
      return EngineEventKind::kServerStopped;
    case v1::EVENT_KIND_CONNECTION_ACCEPTED:
      return EngineEventKind::kConnectionAccepted;
    case v1::EVENT_KIND_CONNECTION_CONNECTED:
      return EngineEventKind::kConnectionConnected;
    case v1::EVENT_KIND_CONNECTION_CLOSED:
      return EngineEventKind::kConnectionClosed;
    case v1::EVENT_KIND_DATA_RECEIVED:
      return EngineEventKind::kDataReceived;
    case v1::EVENT_KIND_DATA_SENT:
      return EngineEventKind::kDataSent;
    case v1::EVENT_KIND_DATAGRAM_DROPPED:
      return EngineEventKind::kDatagramDropped;
    case v1::EVENT_KIND_ERROR:
      return EngineEventKind::kError;
    case v1::EVENT_KIND_EVENTS_LOST:
      return EngineEventKind::kEventsLost;
    case v1::EVENT_KIND_SNAPSHOT_SERVER:
      return EngineEventKind::kSnapshotServer;
    case v1::EVENT_KIND_SNAPSHOT_CONNECTION:
      return EngineEventKind::kSnapshotConnection;
    case v1::EVENT_KIND_SNAPSHOT_END:
      return EngineEventKind::kSnapshotEnd;
    case v1::EVENT_KIND_CONNECTION_PEER_CLOSED:
      return EngineEventKind::kConnectionPeerClosed;
    case v1::EVENT_KIND_FAULT_ADDED:
      return EngineEventKind::kFaultAdded;
    case v1::EVENT_KIND_FAULT_REMOVED:
      return EngineEventKind::kFaultRemoved;
    case v1::EVENT_KIND_FAULT_APPLIED:
      return EngineEventKind::kFaultApplied;
    default:  // EVENT_KIND_UNSPECIFIED filters nothing: refused too.
      return absl::InvalidArgumentError(
          absl::StrCat("watch: unknown event kind ", kind));
  }
}

v1::EventKind EventKindToProto(EngineEventKind kind) {
  switch (kind) {
    case EngineEventKind::kUnspecified:
      break;
    case EngineEventKind::kServerStarted:
      return v1::EVENT_KIND_SERVER_STARTED;
    case EngineEventKind::kServerStopped:
      return v1::EVENT_KIND_SERVER_STOPPED;
    case EngineEventKind::kConnectionAccepted:
      return v1::EVENT_KIND_CONNECTION_ACCEPTED;
    case EngineEventKind::kConnectionConnected:
      return v1::EVENT_KIND_CONNECTION_CONNECTED;
    case EngineEventKind::kConnectionClosed:
      return v1::EVENT_KIND_CONNECTION_CLOSED;
    case EngineEventKind::kDataReceived:
      return v1::EVENT_KIND_DATA_RECEIVED;
    case EngineEventKind::kDataSent:
      return v1::EVENT_KIND_DATA_SENT;
    case EngineEventKind::kDatagramDropped:
      return v1::EVENT_KIND_DATAGRAM_DROPPED;
    case EngineEventKind::kError:
      return v1::EVENT_KIND_ERROR;
    case EngineEventKind::kEventsLost:
      return v1::EVENT_KIND_EVENTS_LOST;
    case EngineEventKind::kSnapshotServer:
      return v1::EVENT_KIND_SNAPSHOT_SERVER;
    case EngineEventKind::kSnapshotConnection:
      return v1::EVENT_KIND_SNAPSHOT_CONNECTION;
    case EngineEventKind::kSnapshotEnd:
      return v1::EVENT_KIND_SNAPSHOT_END;
    case EngineEventKind::kConnectionPeerClosed:
      return v1::EVENT_KIND_CONNECTION_PEER_CLOSED;
    case EngineEventKind::kFaultAdded:
      return v1::EVENT_KIND_FAULT_ADDED;
    case EngineEventKind::kFaultRemoved:
      return v1::EVENT_KIND_FAULT_REMOVED;
    case EngineEventKind::kFaultApplied:
      return v1::EVENT_KIND_FAULT_APPLIED;
  }
  return v1::EVENT_KIND_UNSPECIFIED;
}

absl::StatusOr<WatchFilter> WatchFilterFromProto(
    const v1::WatchRequest& request) {
  WatchFilter filter;
  filter.server_id = request.server_id();
  filter.connection_id = request.connection_id();
  for (int kind : request.kinds()) {
    auto engine_kind = EventKindFromProto(kind);
    if (!engine_kind.ok()) return engine_kind.status();
    filter.kinds.push_back(*engine_kind);
  }
  filter.include_data_bytes =
      std::min<size_t>(request.include_data_bytes(), kMaxWatchDataBytes);
  filter.snapshot = request.snapshot();
  for (const auto& [key, value] : request.label_selector()) {
    filter.selector[key] = value;
  }
  return filter;
}

void EngineEventToProto(const EngineEvent& in, v1::Event* out) {
  out->set_seq(in.seq);
  TimeToProto(in.time, out->mutable_time());
  out->set_kind(EventKindToProto(in.kind));
  out->set_server_id(in.server_id);
  out->set_connection_id(in.connection_id);
  if (in.server) ServerInfoToProto(*in.server, out->mutable_server());
  if (in.connection) {
    ConnectionInfoToProto(*in.connection, out->mutable_connection());
  }
  out->set_size(in.size);
  out->set_data(in.data);
  if (in.peer) SocketAddressToProto(*in.peer, out->mutable_peer());
  out->set_close_reason(CloseReasonToProto(in.close_reason));
  out->set_message(in.message);
  out->set_lost(in.lost);
}

std::string MalformedRequestMessage(const google::protobuf::Descriptor* type) {
  return absl::StrCat(
      "the request could not be parsed as ",
      type != nullptr ? type->full_name() : std::string("a message"),
      ": malformed protobuf (truncated, wrong wire type, nested too deep, "
      "or invalid UTF-8 in a string field)");
}

}  // namespace sockagent