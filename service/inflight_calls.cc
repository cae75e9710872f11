#include "service/inflight_calls.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sockagent {
namespace {

constexpr absl::string_view kOther = "other";

class InflightInterceptor final : public grpc::experimental::Interceptor {
 public:
  InflightInterceptor(InflightCalls* calls, std::string method)
      : calls_(calls), method_(std::move(method)) {
    if (calls_ != nullptr) calls_->Begin(method_);
  }
  ~InflightInterceptor() override {
    if (calls_ != nullptr) calls_->End(method_);
  }
  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  InflightCalls* const calls_;  // Null: not counted.
  const std::string method_;
};

class InflightFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit InflightFactory(InflightCalls* calls) : calls_(calls) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const absl::string_view method =
        info->method() != nullptr ? info->method() : "";
    return new InflightInterceptor(
        InflightCalls::Counted(method) ? calls_ : nullptr, std::string(method));
  }

 private:
  InflightCalls* const calls_;
};

}  // namespace

bool InflightCalls::Counted(absl::string_view method) {
  return method != "/grpc.health.v1.Health/Watch" &&
         !absl::StartsWith(method, "/grpc.reflection.");
}

void InflightCalls::Begin(absl::string_view method) {
  absl::MutexLock lock(&mu_);
  ++total_;
  auto it = by_method_.find(method);
  if (it == by_method_.end()) {
    if (by_method_.size() >= kMaxMethods) method = kOther;
    it = by_method_.try_emplace(method, 0).first;
  }
  ++it->second;
}

void InflightCalls::End(absl::string_view method) {
  absl::MutexLock lock(&mu_);
  if (total_ > 0) --total_;
  auto it = by_method_.find(method);
  if (it == by_method_.end()) it = by_method_.find(kOther);
  if (it == by_method_.end()) return;
  if (--it->second == 0) by_method_.erase(it);
}

size_t InflightCalls::Count() {
  absl::MutexLock lock(&mu_);
  return total_;
}

bool InflightCalls::AwaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return total_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

std::string InflightCalls::Describe() {
  absl::MutexLock lock(&mu_);
  if (total_ == 0) return "none";
  std::vector<std::pair<std::string, size_t>> sorted(by_method_.begin(),
                                                     by_method_.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrCat(
      total_, total_ == 1 ? " call" : " calls", " in flight: ",
      absl::StrJoin(sorted, ", ", [](std::string* out, const auto& kv) {
        absl::StrAppend(out, kv.first, " x", kv.second);
      }));
}

InflightCalls& ProcessInflightCalls() {
  static InflightCalls* calls = new InflightCalls();
  return *calls;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
InflightInterceptorFactory(InflightCalls* calls) {
  return std::make_unique<InflightFactory>(calls);
}

}  // namespace sockagent
