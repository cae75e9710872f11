#include "service/control_guard.h"

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/strings/match.h"

namespace sockagent {
namespace {

class ControlGuardInterceptor final : public grpc::experimental::Interceptor {
 public:
  ControlGuardInterceptor(grpc::experimental::ServerRpcInfo* info,
                          ControlListener* listener)
      : info_(info), listener_(listener) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
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
  bool authenticated_ = false;
};

class ControlGuardFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ControlGuardFactory(ControlListener* listener)
      : listener_(listener) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ControlGuardInterceptor(info, listener_);
  }

 private:
  ControlListener* listener_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ControlGuardInterceptorFactory(ControlListener* listener) {
  return std::make_unique<ControlGuardFactory>(listener);
}

}  // namespace sockagent
