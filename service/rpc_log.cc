#include "service/rpc_log.h"

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/control_listener.h"
#include "service/log.h"

namespace sockagent {
namespace {

class RpcLogInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit RpcLogInterceptor(grpc::experimental::ServerRpcInfo* info)
      : info_(info) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Log(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  void Log(const grpc::Status& status) const {
    const grpc::StatusCode code = status.error_code();
    LogLevel level = LogLevel::kDebug;
    absl::string_view event = "rpc";
    if (code == grpc::StatusCode::UNAUTHENTICATED) {
      level = LogLevel::kWarn;
      event = "auth_failure";
    } else if (code == grpc::StatusCode::PERMISSION_DENIED) {
      level = LogLevel::kWarn;
      event = "policy_refusal";
    }
    if (!LogEnabled(level)) return;
    grpc::ServerContextBase* context = info_->server_context();
    LogEvent(level, event,
             {{"method", info_->method() ? info_->method() : ""},
              {"peer", context != nullptr ? DisplayPeer(context->peer()) : ""},
              // grpc::StatusCode and absl::StatusCode share their numbers.
              {"code",
               absl::StatusCodeToString(static_cast<absl::StatusCode>(code))},
              {"msg", status.error_message()}});
  }

  grpc::experimental::ServerRpcInfo* const info_;
};

class RpcLogFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcLogInterceptor(info);
  }
};

void LogFromGrpc(gpr_log_func_args* args) {
  const absl::string_view message = args->message ? args->message : "";
  const bool handshake = absl::StrContains(message, "Handshake failed") ||
                         absl::StrContains(message, "No match found for");
  LogLevel level = LogLevel::kDebug;
  if (handshake) {
    level = LogLevel::kWarn;
  } else if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    level = LogLevel::kError;
  } else if (args->severity == GPR_LOG_SEVERITY_INFO) {
    level = LogLevel::kInfo;
  }
  if (!LogEnabled(level)) return;
  LogEvent(
      level, handshake ? "tls_handshake_failure" : "grpc",
      {{"src", absl::StrCat(args->file ? args->file : "", ":", args->line)},
       {"msg", std::string(message)}});
}

}  // namespace

void RouteGrpcLogs() { gpr_set_log_function(LogFromGrpc); }

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcLogInterceptors() {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      factories;
  factories.push_back(std::make_unique<RpcLogFactory>());
  return factories;
}

}  // namespace sockagent
