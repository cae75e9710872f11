#include "service/metrics_rpc.h"

#include <grpcpp/support/status.h>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace sockagent {

namespace {

// Health and reflection are served by gRPC's own code, whose descriptors
// need not be in the generated pool: named here.
constexpr std::pair<const char*, const char*> kOtherMethods[] = {
    {"grpc.health.v1.Health", "Check"},
    {"grpc.health.v1.Health", "Watch"},
    {"grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo"},
};

}  // namespace

RpcMetrics& RpcMetrics::Get() {
  static RpcMetrics* metrics = new RpcMetrics();
  return *metrics;
}

RpcMetrics::RpcMetrics() {
  auto add = [this](const std::string& service, const std::string& name) {
    auto m = std::make_unique<Method>();
    m->service = service;
    m->name = name;
    by_path_[absl::StrCat("/", service, "/", name)] = m.get();
    methods_.push_back(std::move(m));
  };
  const google::protobuf::ServiceDescriptor* agent =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "sockagent.v1.SocketAgent");
  if (agent != nullptr) {
    for (int i = 0; i < agent->method_count(); ++i) {
      add(agent->full_name(), agent->method(i)->name());
    }
  }
  for (const auto& [service, name] : kOtherMethods) add(service, name);
  add("unknown", "unknown");
}

void RpcMetrics::Count(absl::string_view path, int code, absl::Duration took,
                       bool unary) {
  auto it = by_path_.find(path);
  Method& m = it != by_path_.end() ? *it->second : *methods_.back();
  if (code < 0 || code >= kCodes) code = grpc::StatusCode::UNKNOWN;
  m.calls[code].fetch_add(1, std::memory_order_relaxed);
  if (code == grpc::StatusCode::UNAUTHENTICATED) {
    auth_failures_.fetch_add(1, std::memory_order_relaxed);
  } else if (code == grpc::StatusCode::PERMISSION_DENIED) {
    policy_refusals_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!unary) return;
  const double seconds = absl::ToDoubleSeconds(took);
  size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  m.bucket[b].fetch_add(1, std::memory_order_relaxed);
  m.latency_count.fetch_add(1, std::memory_order_relaxed);
  const int64_t ns = absl::ToInt64Nanoseconds(took);
  m.latency_sum_ns.fetch_add(ns > 0 ? static_cast<uint64_t>(ns) : 0,
                             std::memory_order_relaxed);
}

}  // namespace sockagent
