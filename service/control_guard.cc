#include "service/control_guard.h"

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "service/auth.h"

namespace sockagent {
namespace {

class ControlGuardInterceptor final : public grpc::experimental::Interceptor {
 public:
  ControlGuardInterceptor(grpc::experimental::ServerRpcInfo* info,
                          ControlListener* listener, const std::string* token)
      : info_(info), listener_(listener), token_(token) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      // The same check the handler makes first (auth.h), done here so the
      // connection counts as authenticated while its first call is still
      // running (a long Watch, a parked Receive).
      grpc::ServerContextBase* context = info_->server_context();
      if (context != nullptr &&
          absl::StartsWith(info_->method(), "/sockagent.v1.SocketAgent/") &&
          CheckBearerToken(*context, *token_).ok()) {
        listener_->OnCallAuthenticated(context->peer());
      }
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::StatusCode code = methods->GetSendStatus().error_code();
      authenticated_ =
          absl::StartsWith(info_->method(), "/sockagent.v1.SocketAgent/") &&
          code != grpc::StatusCode::UNAUTHENTICATED;
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_CLOSE)) {
      grpc::ServerContextBase* context = info_->server_context();
      if (context != nullptr) {
        listener_->OnCallEnded(context->peer(), context->IsCancelled(),
                               authenticated_);
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  ControlListener* listener_;
  const std::string* token_;  // The factory's; it outlives every call.
  bool authenticated_ = false;
};

class ControlGuardFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  ControlGuardFactory(ControlListener* listener, std::string token)
      : listener_(listener), token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ControlGuardInterceptor(info, listener_, &token_);
  }

 private:
  ControlListener* listener_;
  const std::string token_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ControlGuardInterceptorFactory(ControlListener* listener,
                               std::string bearer_token) {
  return std::make_unique<ControlGuardFactory>(listener,
                                               std::move(bearer_token));
}

}  // namespace sockagent
