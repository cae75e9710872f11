#include "service/metrics_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "service/auth.h"
#include "service/log.h"

namespace sockagent {

namespace {

constexpr absl::string_view kPath = "/metrics";

MHD_Result Reply(MHD_Connection* connection, unsigned int status,
                 absl::string_view body, const char* content_type,
                 bool challenge = false) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (challenge) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            "Bearer realm=\"sockagent metrics\"");
  }
  const MHD_Result r = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return r;
}

constexpr const char* kText = "text/plain; charset=utf-8";

bool TokenMatches(absl::string_view expected, const char* header) {
  if (header == nullptr) return false;
  absl::string_view h(header);
  if (!absl::ConsumePrefix(&h, "Bearer ")) return false;
  // Same time whatever prefix matches (the length is not secret).
  return h.size() == expected.size() &&
         CRYPTO_memcmp(h.data(), expected.data(), h.size()) == 0;
}

void LogFromMhd(void*, const char* format, va_list args) {
  if (!LogEnabled(LogLevel::kDebug)) return;
  char line[512];
  vsnprintf(line, sizeof line, format, args);
  absl::string_view text(line);
  absl::ConsumeSuffix(&text, "\n");
  LogEvent(LogLevel::kDebug, "metrics_http", {{"msg", std::string(text)}});
}

}  // namespace

struct MetricsServerAccess {
  static MHD_Result Handle(void* cls, MHD_Connection* connection,
                           const char* url, const char* method,
                           const char* /*version*/, const char* /*upload_data*/,
                           size_t* upload_data_size, void** /*con_cls*/) {
    const MetricsServer& server = *static_cast<MetricsServer*>(cls);
    const MetricsServerOptions& o = server.options_;
    // A request body is never read: answered before it arrives, and MHD
    // discards it.
    *upload_data_size = 0;
    const absl::string_view m(method);
    if (!o.token.empty() &&
        !TokenMatches(o.token, MHD_lookup_connection_value(
                                   connection, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_AUTHORIZATION))) {
      return Reply(connection, MHD_HTTP_UNAUTHORIZED,
                   "missing or wrong bearer token (see --metrics-token-file)\n",
                   kText, /*challenge=*/true);
    }
    if (absl::string_view(url) != kPath) {
      return Reply(connection, MHD_HTTP_NOT_FOUND,
                   "not found: metrics are served at /metrics\n", kText);
    }
    if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
      return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED,
                   "only GET and HEAD are served\n", kText);
    }
    const char* accept = MHD_lookup_connection_value(
        connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    const MetricsFormat format =
        FormatForAccept(accept != nullptr ? accept : "");
    const std::string body = o.render ? o.render(format) : std::string();
    return Reply(connection, MHD_HTTP_OK, body, MetricsContentType(format));
  }
};

absl::StatusOr<MetricsServerOptions> MetricsOptionsFromFlags(
    const MetricsFlags& flags) {
  MetricsServerOptions o;
  if (flags.listen.empty()) {
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string&>{"--metrics-token-file",
                                                     flags.token_file},
          {"--metrics-tls-cert", flags.tls_cert},
          {"--metrics-tls-key", flags.tls_key}}) {
      if (!value.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, " has no effect without --metrics-listen HOST:PORT"));
      }
    }
    return o;
  }
  auto listen = ParseListenAddress(flags.listen);
  if (!listen.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen: ", listen.status().message()));
  }
  if (!listen->unix_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen: \"", flags.listen,
                     "\": metrics are served over TCP only; give HOST:PORT, "
                     "e.g. 127.0.0.1:9464"));
  }
  o.listen = *std::move(listen);
  if (o.listen.host == "localhost") o.listen.host = "127.0.0.1";
  if (!flags.token_file.empty()) {
    bool loose = false;
    auto token = LoadTokenFile(flags.token_file, &loose);
    if (!token.ok()) {
      return absl::Status(
          token.status().code(),
          absl::StrCat("--metrics-token-file: ", token.status().message()));
    }
    if (loose) {
      LogEvent(LogLevel::kWarn, "token_file_readable",
               {{"path", flags.token_file},
                {"msg",
                 "group or others may read the metrics token file; chmod "
                 "0600 it"}});
    }
    o.token = *std::move(token);
  }
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--metrics-tls-cert and --metrics-tls-key go together: give both");
  }
  if (!flags.tls_cert.empty()) {
    auto cert = ReadPemFile("metrics-tls-cert", flags.tls_cert);
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile("metrics-tls-key", flags.tls_key);
    if (!key.ok()) return key.status();
    o.tls_cert = *std::move(cert);
    o.tls_key = *std::move(key);
  }
  return o;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    MetricsServerOptions options) {
  auto server =
      std::unique_ptr<MetricsServer>(new MetricsServer(std::move(options)));
  const MetricsServerOptions& o = server->options_;
  const std::string shown = o.listen.Display(o.listen.port);
  auto fail = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat("--metrics-listen ", shown, ": ", why));
  };
  sockaddr_storage addr{};
  unsigned int flags =
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  sockaddr_in* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  sockaddr_in6* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, o.listen.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(o.listen.port);
  } else if (inet_pton(AF_INET6, o.listen.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(o.listen.port);
    flags |= MHD_USE_IPv6;
  } else {
    return fail("not an IP address");
  }
  const bool tls = !o.tls_cert.empty();
  if (tls) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
      return fail("this libmicrohttpd has no TLS support");
    }
    flags |= MHD_USE_TLS;
  }
  std::vector<MHD_OptionItem> items = {
      {MHD_OPTION_SOCK_ADDR, 0, &addr},
      {MHD_OPTION_CONNECTION_LIMIT, kMaxMetricsConnections, nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, 10, nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 32 * 1024, nullptr},
      {MHD_OPTION_LISTEN_BACKLOG_SIZE, 16, nullptr},
      {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&LogFromMhd),
       nullptr},
  };
  if (tls) {
    items.push_back(
        {MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(o.tls_cert.c_str())});
    items.push_back(
        {MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(o.tls_key.c_str())});
  }
  items.push_back({MHD_OPTION_END, 0, nullptr});
  server->daemon_ = MHD_start_daemon(
      flags, o.listen.port, nullptr, nullptr, &MetricsServerAccess::Handle,
      server.get(), MHD_OPTION_ARRAY, items.data(), MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    return fail(tls ? "cannot serve (address in use or unavailable, or the "
                      "certificate and key do not load)"
                    : "cannot serve (address in use or unavailable)");
  }
  const MHD_DaemonInfo* info =
      MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info != nullptr ? info->port : o.listen.port;
  return server;
}

MetricsServer::~MetricsServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

std::string MetricsServer::Url() const {
  return absl::StrCat(options_.tls_cert.empty() ? "http://" : "https://",
                      options_.listen.Display(port_), kPath);
}

}  // namespace sockagent
