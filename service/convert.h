// Conversions between the API's proto messages and the engine's plain
// types. One function per idea, used by every RPC that needs it. Requests
// are validated here (unknown enum values, out-of-range numbers) so the
// engine sees only well-formed values.
#ifndef SOCKAGENT_SERVICE_CONVERT_H_
#define SOCKAGENT_SERVICE_CONVERT_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/resolver.h"
#include "agent/types.h"
#include "sockagent/v1/agent.pb.h"

namespace sockagent {

// Protobuf maps are unordered; the engine's Labels are ordered.
Labels LabelsFromProto(
    const google::protobuf::Map<std::string, std::string>& labels);
void LabelsToProto(const Labels& labels,
                   google::protobuf::Map<std::string, std::string>* out);

absl::StatusOr<Family> FamilyFromProto(v1::Family family);
v1::Family FamilyToProto(Family family);
absl::StatusOr<SocketType> SocketTypeFromProto(v1::SocketType type);
v1::SocketType SocketTypeToProto(SocketType type);

void SocketAddressToProto(const SocketAddress& in, v1::SocketAddress* out);
// Connection.perf: a discard server's counts of one Perf UDP sender.
void PerfReceiveStatsToProto(const PerfReceiveStats& in,
                             v1::PerfReceiveStats* out);

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out);
void DurationToProto(absl::Duration d, google::protobuf::Duration* out);
// Negative or out-of-range durations are INVALID_ARGUMENT naming `field`.
absl::StatusOr<absl::Duration> DurationFromProto(
    const google::protobuf::Duration& d, absl::string_view field);

absl::StatusOr<ResolveQuery> ResolveQueryFromProto(
    const v1::ResolveRequest& request);
void AddressEntryToProto(const AddressEntry& in, v1::AddressInfo* out);

// Socket objects. Servers: service/convert_server.cc.
absl::StatusOr<Transport> TransportFromProto(v1::Transport transport);
v1::Transport TransportToProto(Transport transport);
absl::StatusOr<Endpoint> EndpointFromProto(const v1::Endpoint& endpoint,
                                           absl::string_view field);
// `tls_path_dirs`: canonical directories TLS file paths may name (the
// daemon's --allow-tls-paths); empty: none.
absl::StatusOr<ServerSpec> ServerSpecFromProto(
    const v1::StartServerRequest& request,
    const std::vector<std::string>& tls_path_dirs = {});
void ServerInfoToProto(const ServerInfo& in, v1::Server* out);
v1::StartOutcome StartOutcomeToProto(StartOutcome outcome);
// StopServerRequest: one of id, name or label_selector.
absl::StatusOr<Selector> ServerSelectorFromProto(
    const v1::StopServerRequest& request);
absl::StatusOr<ClientSpec> ClientSpecFromProto(
    const v1::OpenClientRequest& request);
// List pages: TLS peer certificates without their PEM.
void ConnectionInfoToProto(const ConnectionInfo& in, v1::Connection* out);
// One connection (ListConnectionsRequest.id): everything.
void FullConnectionInfoToProto(const ConnectionInfo& in, v1::Connection* out);

// TLS (service/convert_tls.cc).
absl::StatusOr<std::shared_ptr<const TlsServerContext>> TlsServerFromProto(
    const v1::TlsServerOptions& in,
    const std::vector<std::string>& tls_path_dirs);
absl::StatusOr<std::shared_ptr<const TlsClientContext>> TlsClientFromProto(
    const v1::TlsClientOptions& in, absl::string_view host);
// The same options, checked field by field but not yet made into a context
// (the Prober makes its contexts itself, one per distinct spec and host).
absl::StatusOr<TlsClientSpec> TlsClientSpecFromProto(
    const v1::TlsClientOptions& in);
void TlsServerInfoToProto(const TlsServerInfo& in, v1::TlsServerInfo* out);
// A named server's TLS options as requested, for listings (never the key).
void TlsServerSpecToProto(const TlsServerSpec& in, v1::TlsServerOptions* out);
// A proxy's upstream TLS options as requested, for listings (never the key).
void TlsClientSpecToProto(const TlsClientSpec& in, v1::TlsClientOptions* out);
void TlsInfoToProto(const TlsInfo* in, bool handshaking, bool with_pem,
                    v1::TlsConnectionInfo* out);
absl::StatusOr<Selector> SelectorFromProto(
    const std::string& id,
    const google::protobuf::Map<std::string, std::string>& labels);
absl::StatusOr<ConnectionFilter> ConnectionFilterFromProto(
    const v1::ListConnectionsRequest& request);
absl::StatusOr<ServerFilter> ServerFilterFromProto(
    const v1::ListServersRequest& request);
absl::StatusOr<CloseMode> CloseModeFromProto(v1::CloseMode mode);
v1::CloseReason CloseReasonToProto(CloseReason reason);
// Every event kind but EVENT_KIND_UNSPECIFIED (or a number the API does not
// define): INVALID_ARGUMENT "watch: unknown event kind N".
absl::StatusOr<EngineEventKind> EventKindFromProto(int kind);
v1::EventKind EventKindToProto(EngineEventKind kind);
// Unknown or UNSPECIFIED kinds are InvalidArgument; include_data_bytes is
// capped at kMaxWatchDataBytes.
absl::StatusOr<WatchFilter> WatchFilterFromProto(
    const v1::WatchRequest& request);
void EngineEventToProto(const EngineEvent& in, v1::Event* out);

// The status message for a request that could not be parsed as `type`
// (truncated, wrong wire type, nested too deep, invalid UTF-8).
std::string MalformedRequestMessage(const google::protobuf::Descriptor* type);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONVERT_H_
