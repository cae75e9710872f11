#include "service/audit_log.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/grpcpp.h>
#include <openssl/sha.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/control_listener.h"
#include "service/log.h"
#include "sockagent/v1/agent.pb.h"

namespace sockagent {
namespace {

namespace v1 = ::sockagent::v1;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr size_t kStringFieldBytes = 64;
constexpr size_t kRequestBytes = 512;
constexpr size_t kMaxIds = 10;

enum class Kind {
  kNone,
  kStartServer,
  kStopServer,
  kOpenClient,
  kCloseConnection,
  kStream,
  kAddFault,
  kUpdateFault,
  kRemoveFault
};

Kind KindOf(absl::string_view method) {
  if (!absl::ConsumePrefix(&method, "/sockagent.v1.SocketAgent/")) {
    return Kind::kNone;
  }
  if (method == "StartServer") return Kind::kStartServer;
  if (method == "StopServer") return Kind::kStopServer;
  if (method == "OpenClient") return Kind::kOpenClient;
  if (method == "CloseConnection") return Kind::kCloseConnection;
  if (method == "Stream") return Kind::kStream;
  if (method == "AddFault") return Kind::kAddFault;
  if (method == "UpdateFault") return Kind::kUpdateFault;
  if (method == "RemoveFault") return Kind::kRemoveFault;
  return Kind::kNone;
}

// The message on one line, long strings cut, the whole bounded.
std::string Summarize(const Message& message) {
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  printer.SetTruncateStringFieldLongerThan(kStringFieldBytes);
  std::string text;
  printer.PrintToString(message, &text);
  absl::StripTrailingAsciiWhitespace(&text);
  if (text.size() > kRequestBytes) {
    text = absl::StrCat(text.substr(0, kRequestBytes), "...(", text.size(),
                        " bytes)");
  }
  return text;
}

// The `id` fields of `message` and of the messages it holds directly.
void CollectIds(const Message& message, int depth,
                std::vector<std::string>* ids, size_t* total) {
  const auto* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->name() == "id" &&
        field->type() == FieldDescriptor::TYPE_STRING &&
        !field->is_repeated()) {
      ++*total;
      if (ids->size() < kMaxIds) {
        ids->push_back(absl::CHexEscape(reflection->GetString(message, field)));
      }
    } else if (depth < 1 &&
               field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        const int n = reflection->FieldSize(message, field);
        for (int i = 0; i < n; ++i) {
          CollectIds(reflection->GetRepeatedMessage(message, field, i),
                     depth + 1, ids, total);
        }
      } else {
        CollectIds(reflection->GetMessage(message, field), depth + 1, ids,
                   total);
      }
    }
  }
}

bool ParseByteBuffer(const grpc::ByteBuffer& buffer, Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return message->ParseFromString(bytes);
}

class AuditInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuditInterceptor(grpc::experimental::ServerRpcInfo* info, Kind kind)
      : info_(info), kind_(kind), start_(absl::Now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (!logged_ && !have_request_ &&
        methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      have_request_ = true;
      request_ = SummarizeRequest(methods->GetRecvMessage());
    }
    if (!logged_ && !have_response_ &&
        methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      have_response_ = true;
      ReadResponse(methods);
      // A Stream is audited when it opened, not when it ends (hours later).
      if (kind_ == Kind::kStream) Log(grpc::Status::OK);
    }
    if (!logged_ && methods->QueryInterceptionHookPoint(
                        InterceptionHookPoints::PRE_SEND_STATUS)) {
      Log(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  std::string SummarizeRequest(void* message) const {
    if (message == nullptr) return "";
    switch (kind_) {
      case Kind::kStartServer:
        return Summarize(*static_cast<v1::StartServerRequest*>(message));
      case Kind::kStopServer:
        return Summarize(*static_cast<v1::StopServerRequest*>(message));
      case Kind::kOpenClient:
        return Summarize(*static_cast<v1::OpenClientRequest*>(message));
      case Kind::kCloseConnection:
        return Summarize(*static_cast<v1::CloseConnectionRequest*>(message));
      case Kind::kStream: {
        // Stream's messages are raw (stream_reactor.h): parse a copy of
        // the first one, the StreamStart.
        v1::StreamRequest request;
        if (!ParseByteBuffer(*static_cast<grpc::ByteBuffer*>(message),
                             &request)) {
          return "(does not parse)";
        }
        return Summarize(request);
      }
      case Kind::kAddFault:
        return Summarize(*static_cast<v1::AddFaultRequest*>(message));
      case Kind::kUpdateFault:
        return Summarize(*static_cast<v1::UpdateFaultRequest*>(message));
      case Kind::kRemoveFault:
        return Summarize(*static_cast<v1::RemoveFaultRequest*>(message));
      case Kind::kNone:
        break;
    }
    return "";
  }

  void ReadResponse(grpc::experimental::InterceptorBatchMethods* methods) {
    if (kind_ == Kind::kStream) {
      const grpc::ByteBuffer* buffer = methods->GetSerializedSendMessage();
      v1::StreamResponse response;
      if (buffer != nullptr && ParseByteBuffer(*buffer, &response)) {
        CollectIds(response, 0, &ids_, &total_ids_);
      }
      return;
    }
    const void* message = methods->GetSendMessage();
    if (message == nullptr) return;
    const Message* response = nullptr;
    switch (kind_) {
      case Kind::kStartServer:
        response = static_cast<const v1::StartServerResponse*>(message);
        break;
      case Kind::kStopServer:
        response = static_cast<const v1::StopServerResponse*>(message);
        break;
      case Kind::kOpenClient:
        response = static_cast<const v1::OpenClientResponse*>(message);
        break;
      case Kind::kCloseConnection:
        response = static_cast<const v1::CloseConnectionResponse*>(message);
        break;
      case Kind::kStream:
      case Kind::kAddFault:  // Faults have names, not ids: in the request.
      case Kind::kUpdateFault:
      case Kind::kRemoveFault:
      case Kind::kNone:
        break;
    }
    if (response != nullptr) CollectIds(*response, 0, &ids_, &total_ids_);
  }

  void Log(const grpc::Status& status) {
    logged_ = true;
    // Refused by the token check: auth_failure (rpc_log.h) tells it,
    // rate-limited.
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) return;
    if (!LogEnabled(LogLevel::kInfo)) return;
    grpc::ServerContextBase* context = info_->server_context();
    std::string peer;
    std::string client_cn;
    std::string token = "none";
    if (context != nullptr) {
      peer = DisplayPeer(context->peer());
      client_cn = DisplayClientCn(context->peer());
      const auto& metadata = context->client_metadata();
      auto it = metadata.find("authorization");
      if (it != metadata.end()) {
        token = TokenFingerprint(
            absl::string_view(it->second.data(), it->second.size()));
      }
    }
    std::string ids = absl::StrJoin(ids_, ",");
    if (total_ids_ > ids_.size()) {
      absl::StrAppend(&ids, ",+", total_ids_ - ids_.size());
    }
    absl::string_view method = info_->method() ? info_->method() : "";
    absl::ConsumePrefix(&method, "/sockagent.v1.SocketAgent/");
    LogEvent(LogLevel::kInfo, "audit",
             {{"method", std::string(method)},
              {"peer", peer},
              {"client_cn", client_cn},
              {"token", token},
              {"request", request_},
              {"code", absl::StatusCodeToString(
                           static_cast<absl::StatusCode>(status.error_code()))},
              {"msg", status.error_message()},
              {"ids", ids},
              {"took", absl::FormatDuration(absl::Trunc(
                           absl::Now() - start_, absl::Microseconds(1)))}});
  }

  grpc::experimental::ServerRpcInfo* const info_;
  const Kind kind_;
  const absl::Time start_;
  bool have_request_ = false;
  bool have_response_ = false;
  bool logged_ = false;
  std::string request_;
  std::vector<std::string> ids_;
  size_t total_ids_ = 0;
};

// No interceptor (null) for calls that are not audited.
class AuditFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const Kind kind = KindOf(info->method() ? info->method() : "");
    if (kind == Kind::kNone) return nullptr;
    return new AuditInterceptor(info, kind);
  }
};

}  // namespace

std::string TokenFingerprint(absl::string_view authorization) {
  if (authorization.empty()) return "none";
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") || token.empty()) {
    return "malformed";
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest);
  return absl::StrCat("sha256:",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(digest), 4)));
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
AuditInterceptorFactory() {
  return std::make_unique<AuditFactory>();
}

}  // namespace sockagent
