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
      if (context != nullptr && own_method() &&
          CheckBearerToken(*context, *token_).ok()) {
        listener_->OnCallAuthenticated(context->peer());
      }
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::StatusCode code = methods->GetSendStatus().error_code();
      authenticated_ =
          own_method() && code != grpc::StatusCode::UNAUTHENTICATED;
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_CLOSE)) {
      grpc::ServerContextBase* context = info_->server_context();
      if (context != nullptr) {
        // IsCancelled() only for the agent's own methods, which all use
        // gRPC's callback API, where it reads a flag. On a sync-API call
        // (reflection) it plucks this very completion from the queue, which
        // runs this hook again and again until the stack overflows
        // (gRPC 1.51 ServerContextBase::CompletionOp::CheckCancelled). So
        // cancels of reflection and health calls are not counted here; the
        // relay's HTTP/2 guard (h2_guard.h) still bounds resets per
        // connection.
        const bool cancelled = own_method() && context->IsCancelled();
        listener_->OnCallEnded(context->peer(), cancelled, authenticated_);
      }
    }
    methods->Proceed();
  }

 private:
  bool own_method() const {
    return info_->method() != nullptr &&
           absl::StartsWith(info_->method(), "/sockagent.v1.SocketAgent/");
  }

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
