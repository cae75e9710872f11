#include "service/fault_rpc.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/convert.h"

namespace sockagent {
namespace {

absl::StatusOr<FaultDirection> DirectionFromProto(int d) {
  switch (d) {
    case v1::FAULT_DIRECTION_UNSPECIFIED:
    case v1::FAULT_DIRECTION_SENT:
      return FaultDirection::kSent;
    case v1::FAULT_DIRECTION_RECEIVED:
      return FaultDirection::kReceived;
    case v1::FAULT_DIRECTION_UPSTREAM:
      return FaultDirection::kUpstream;
    case v1::FAULT_DIRECTION_DOWNSTREAM:
      return FaultDirection::kDownstream;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("fault.direction: unknown value ", d));
  }
}

v1::FaultDirection DirectionToProto(FaultDirection d) {
  switch (d) {
    case FaultDirection::kSent:
      return v1::FAULT_DIRECTION_SENT;
    case FaultDirection::kReceived:
      return v1::FAULT_DIRECTION_RECEIVED;
    case FaultDirection::kUpstream:
      return v1::FAULT_DIRECTION_UPSTREAM;
    case FaultDirection::kDownstream:
      return v1::FAULT_DIRECTION_DOWNSTREAM;
  }
  return v1::FAULT_DIRECTION_UNSPECIFIED;
}

// A Duration field into `out`, naming it "fault.<type>.<field>".
absl::Status Duration(const google::protobuf::Duration& d,
                      absl::string_view field, absl::Duration* out) {
  auto value = DurationFromProto(d, absl::StrCat("fault.", field));
  if (!value.ok()) return value.status();
  *out = *value;
  return absl::OkStatus();
}

Labels LabelsOf(const google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

}  // namespace

absl::StatusOr<FaultSpec> FaultSpecFromProto(const v1::Fault& fault) {
  FaultSpec spec;
  spec.name = fault.name();
  auto direction = DirectionFromProto(fault.direction());
  if (!direction.ok()) return direction.status();
  spec.direction = *direction;
  spec.toxicity = fault.has_toxicity() ? fault.toxicity() : 1.0;
  spec.seed = fault.seed();
  spec.target.server_id = fault.target().server_id();
  spec.target.connection_id = fault.target().connection_id();
  spec.target.selector = LabelsOf(fault.target().label_selector());
  spec.labels = LabelsOf(fault.labels());
  absl::Status s;
  switch (fault.type_case()) {
    case v1::Fault::kLatency:
      spec.type = FaultType::kLatency;
      s = Duration(fault.latency().latency(), "latency.latency", &spec.latency);
      if (s.ok()) {
        s = Duration(fault.latency().jitter(), "latency.jitter", &spec.jitter);
      }
      break;
    case v1::Fault::kBandwidth:
      spec.type = FaultType::kBandwidth;
      spec.rate_bytes_per_second = fault.bandwidth().rate_bytes_per_second();
      break;
    case v1::Fault::kSlicer:
      spec.type = FaultType::kSlicer;
      spec.average_size = fault.slicer().average_size();
      spec.size_variation = fault.slicer().size_variation();
      s = Duration(fault.slicer().delay(), "slicer.delay", &spec.delay);
      break;
    case v1::Fault::kLimitData:
      spec.type = FaultType::kLimitData;
      spec.bytes = fault.limit_data().bytes();
      break;
    case v1::Fault::kResetPeer:
      spec.type = FaultType::kResetPeer;
      s = Duration(fault.reset_peer().timeout(), "reset_peer.timeout",
                   &spec.timeout);
      break;
    case v1::Fault::kTimeout:
      spec.type = FaultType::kTimeout;
      s = Duration(fault.timeout().timeout(), "timeout.timeout", &spec.timeout);
      break;
    case v1::Fault::kSlowClose:
      spec.type = FaultType::kSlowClose;
      s = Duration(fault.slow_close().delay(), "slow_close.delay", &spec.delay);
      break;
    case v1::Fault::kDrop:
      spec.type = FaultType::kDrop;
      spec.probability = fault.drop().probability();
      break;
    case v1::Fault::kDuplicate:
      spec.type = FaultType::kDuplicate;
      spec.probability = fault.duplicate().probability();
      break;
    case v1::Fault::kDelay:
      spec.type = FaultType::kDelay;
      s = Duration(fault.delay().delay(), "delay.delay", &spec.delay);
      if (s.ok())
        s = Duration(fault.delay().jitter(), "delay.jitter", &spec.jitter);
      break;
    case v1::Fault::TYPE_NOT_SET:
      return absl::InvalidArgumentError(
          "fault: a type is required (latency, bandwidth, slicer, "
          "limit_data, reset_peer, timeout, slow_close)");
  }
  if (!s.ok()) return s;
  return spec;
}

void FaultInfoToProto(const FaultInfo& in, v1::Fault* out) {
  const FaultSpec& s = in.spec;
  out->set_name(s.name);
  out->mutable_target()->set_server_id(s.target.server_id);
  out->mutable_target()->set_connection_id(s.target.connection_id);
  for (const auto& [k, v] : s.target.selector) {
    (*out->mutable_target()->mutable_label_selector())[k] = v;
  }
  out->set_direction(DirectionToProto(s.direction));
  out->set_toxicity(s.toxicity);
  out->set_seed(s.seed);
  for (const auto& [k, v] : s.labels) (*out->mutable_labels())[k] = v;
  switch (s.type) {
    case FaultType::kLatency:
      DurationToProto(s.latency, out->mutable_latency()->mutable_latency());
      DurationToProto(s.jitter, out->mutable_latency()->mutable_jitter());
      break;
    case FaultType::kBandwidth:
      out->mutable_bandwidth()->set_rate_bytes_per_second(
          s.rate_bytes_per_second);
      break;
    case FaultType::kSlicer:
      out->mutable_slicer()->set_average_size(s.average_size);
      out->mutable_slicer()->set_size_variation(s.size_variation);
      DurationToProto(s.delay, out->mutable_slicer()->mutable_delay());
      break;
    case FaultType::kLimitData:
      out->mutable_limit_data()->set_bytes(s.bytes);
      break;
    case FaultType::kResetPeer:
      DurationToProto(s.timeout, out->mutable_reset_peer()->mutable_timeout());
      break;
    case FaultType::kTimeout:
      DurationToProto(s.timeout, out->mutable_timeout()->mutable_timeout());
      break;
    case FaultType::kSlowClose:
      DurationToProto(s.delay, out->mutable_slow_close()->mutable_delay());
      break;
    case FaultType::kDrop:
      out->mutable_drop()->set_probability(s.probability);
      break;
    case FaultType::kDuplicate:
      out->mutable_duplicate()->set_probability(s.probability);
      break;
    case FaultType::kDelay:
      DurationToProto(s.delay, out->mutable_delay()->mutable_delay());
      DurationToProto(s.jitter, out->mutable_delay()->mutable_jitter());
      break;
  }
  TimeToProto(in.created_at, out->mutable_created_at());
  TimeToProto(in.updated_at, out->mutable_updated_at());
  out->set_connections(in.connections);
  out->set_applied(in.applied);
  out->set_skipped(in.skipped);
}

}  // namespace sockagent
