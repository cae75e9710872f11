#include "service/rpc_log.h"

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/inflight_calls.h"
#include "service/log.h"
#include "service/log_limiter.h"

namespace sockagent {
namespace {

// auth_failure and policy_refusal lines: one per peer IP (not IP:port: a
// client opens as many ports as it likes) per interval, with the count of
// those not written. The calls themselves are refused every time.
LogLimiter& RefusalLogLimiter() {
  static LogLimiter* limiter = new LogLimiter();
  return *limiter;
}

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
    const std::string peer = context != nullptr ? context->peer() : "";
    const std::string method = info_->method() ? info_->method() : "";
    // grpc::StatusCode and absl::StatusCode share their numbers.
    const std::string code_name =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    if (level != LogLevel::kWarn) {
      LogEvent(level, event,
               {{"method", method},
                {"peer", peer},
                {"code", code_name},
                {"msg", status.error_message()}});
      return;
    }
    const LogLimiter::Decision d = RefusalLogLimiter().Admit(
        absl::StrCat(event, " ", PeerIp(peer)), absl::Now());
    if (!d.log) return;
    LogEvent(level, event,
             {{"method", method},
              {"peer", peer},
              {"code", code_name},
              {"msg", status.error_message()},
              // Lines like this one from this peer IP not written since its
              // last one (rate limit, see log_limiter.h).
              {"suppressed", absl::StrCat(d.suppressed)}});
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
  factories.push_back(InflightInterceptorFactory(&ProcessInflightCalls()));
  return factories;
}

void SetRefusalLogInterval(absl::Duration interval) {
  RefusalLogLimiter().SetInterval(interval);
}

}  // namespace sockagent
