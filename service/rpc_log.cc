#include "service/rpc_log.h"

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "service/audit_log.h"
#include "service/control_listener.h"
#include "service/convert.h"
#include "service/inflight_calls.h"
#include "service/log.h"
#include "service/log_limiter.h"
#include "service/metrics_rpc.h"

namespace sockagent {

namespace {

using google::protobuf::MethodDescriptor;

// "/pkg.Service/Method" -> its descriptor among the linked protos; null
// when the path is malformed or names nothing known.
const MethodDescriptor* FindMethod(const char* path) {
  if (path == nullptr) return nullptr;
  absl::string_view p(path);
  if (!absl::ConsumePrefix(&p, "/")) return nullptr;
  const size_t slash = p.find('/');
  if (slash == absl::string_view::npos) return nullptr;
  const std::string full =
      absl::StrCat(p.substr(0, slash), ".", p.substr(slash + 1));
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      full);
}

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
      : info_(info), start_(absl::Now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      if (RewriteParseFailure(&status)) methods->ModifySendStatus(status);
      RpcMetrics::Get().Count(
          info_->method() ? info_->method() : "", status.error_code(),
          absl::Now() - start_,
          info_->type() == grpc::experimental::ServerRpcInfo::Type::UNARY);
      Log(status);
    }
    methods->Proceed();
  }

 private:
  // gRPC 1.51's callback handlers answer a request message that does not
  // parse with UNIMPLEMENTED and no message (server_callback_handlers.h:
  // UnimplementedUnaryReactor / UnimplementedWriteReactor), exactly what
  // an unknown method gets. Told apart here: an unknown method goes to the
  // generic (bidi) handler and names no method of a linked service, while
  // a parse failure is on a unary or server-streaming method of one.
  // (Stream, the bidi method, parses its messages itself: stream_reactor.)
  bool RewriteParseFailure(grpc::Status* status) const {
    if (status->error_code() != grpc::StatusCode::UNIMPLEMENTED ||
        !status->error_message().empty() ||
        info_->type() ==
            grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING) {
      return false;
    }
    const MethodDescriptor* method = FindMethod(info_->method());
    if (method == nullptr) return false;
    *status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                           MalformedRequestMessage(method->input_type()));
    grpc::ServerContextBase* context = info_->server_context();
    const std::string peer =
        context != nullptr ? DisplayPeer(context->peer()) : "";
    // Rate-limited like the refusal lines: one per peer IP per interval.
    const LogLimiter::Decision d = RefusalLogLimiter().Admit(
        absl::StrCat("malformed_request ", PeerIp(peer)), absl::Now());
    if (d.log) {
      LogEvent(LogLevel::kWarn, "malformed_request",
               {{"method", info_->method()},
                {"peer", peer},
                {"msg", status->error_message()},
                {"suppressed", absl::StrCat(d.suppressed)}});
    }
    return true;
  }

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
    const std::string peer =
        context != nullptr ? DisplayPeer(context->peer()) : "";
    const std::string method = info_->method() ? info_->method() : "";
    // grpc::StatusCode and absl::StatusCode share their numbers.
    const std::string code_name =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    if (level != LogLevel::kWarn) {
      LogEvent(level, event,
               {{"method", method},
                {"peer", peer},
                {"code", code_name},
                {"msg", status.error_message()},
                {"took", absl::FormatDuration(absl::Trunc(
                             absl::Now() - start_, absl::Microseconds(1)))}});
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
  const absl::Time start_;  // The call's start.
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
  factories.push_back(AuditInterceptorFactory());
  factories.push_back(InflightInterceptorFactory(&ProcessInflightCalls()));
  return factories;
}

void SetRefusalLogInterval(absl::Duration interval) {
  RefusalLogLimiter().SetInterval(interval);
}

}  // namespace sockagent
