// Counts of the gRPC calls the agent answered, for /metrics: calls by
// method and status code, a latency histogram of unary calls by method,
// auth failures and policy refusals. Fed by the RPC log interceptor
// (rpc_log.cc), which sees every call end; read by RenderMetrics
// (metrics.h). Lock-free: relaxed atomics in a table fixed at startup.
//
// Cardinality: the method label takes only the methods of the services the
// agent serves (sockagent.v1.SocketAgent, grpc.health.v1.Health,
// grpc.reflection.v1alpha.ServerReflection); any other path counts as
// method "unknown". The code label takes the 17 gRPC codes.
//
//   RpcMetrics::Get().Count("/sockagent.v1.SocketAgent/Send", 0, took, true);
#ifndef SOCKAGENT_SERVICE_METRICS_RPC_H_
#define SOCKAGENT_SERVICE_METRICS_RPC_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sockagent {

class RpcMetrics final {
 public:
  static constexpr int kCodes = 17;
  // Upper bounds of the latency buckets, in seconds (+Inf is implied).
  static constexpr std::array<double, 12> kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
      0.01,   0.025,   0.05,   0.1,   0.5,    2.5};

  struct Method {
    std::string service;  // "sockagent.v1.SocketAgent"; "unknown".
    std::string name;     // "StartServer"; "unknown".
    std::array<std::atomic<uint64_t>, kCodes> calls{};
    // Unary calls only (a Watch or Stream lasts as long as its caller
    // wants): cumulative counts per bucket are computed when rendered.
    std::array<std::atomic<uint64_t>, kBuckets.size() + 1> bucket{};
    std::atomic<uint64_t> latency_count{0};
    std::atomic<uint64_t> latency_sum_ns{0};
  };

  // The process-wide table. Any thread.
  static RpcMetrics& Get();

  // One call ended with `code` (grpc::StatusCode's number) after `took`.
  // `path` is "/package.Service/Method". Any thread.
  void Count(absl::string_view path, int code, absl::Duration took, bool unary);

  const std::vector<std::unique_ptr<Method>>& methods() const {
    return methods_;
  }
  uint64_t auth_failures() const {
    return auth_failures_.load(std::memory_order_relaxed);
  }
  uint64_t policy_refusals() const {
    return policy_refusals_.load(std::memory_order_relaxed);
  }

 private:
  RpcMetrics();

  // Fixed after construction: read without a lock.
  std::vector<std::unique_ptr<Method>> methods_;  // Last: "unknown".
  absl::flat_hash_map<std::string, Method*> by_path_;
  std::atomic<uint64_t> auth_failures_{0};
  std::atomic<uint64_t> policy_refusals_{0};
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_METRICS_RPC_H_
