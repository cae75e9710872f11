// The daemon's /metrics endpoint (--metrics-listen): a small HTTP(S) server
// of its own, apart from the control API, that Prometheus scrapes.
//
// Built on libmicrohttpd (Debian libmicrohttpd-dev): one internal polling
// thread (epoll) serves every connection, so serving never runs on the
// engine's loop nor on gRPC's threads, and its cost is bounded: at most
// kMaxMetricsConnections connections at once (more are closed at accept),
// each with a 32 KiB memory bound and closed after 10 s of silence.
//
// Access: GET or HEAD /metrics only. With a token (--metrics-token-file,
// never the control token: Prometheus must not hold the power to open
// sockets) a request without "Authorization: Bearer <token>" is answered
// 401. With --metrics-tls-cert/--metrics-tls-key it speaks only HTTPS.
//
//   auto options = MetricsOptionsFromFlags(flags);   // Checks every flag.
//   options->render = [&](MetricsFormat f) { return RenderMetrics(src, f); };
//   auto server = MetricsServer::Start(*std::move(options));
//   printf("metrics on %s\n", (*server)->Url().c_str());
#ifndef SOCKAGENT_SERVICE_METRICS_SERVER_H_
#define SOCKAGENT_SERVICE_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/daemon_options.h"
#include "service/metrics.h"

struct MHD_Daemon;

namespace sockagent {

inline constexpr unsigned kMaxMetricsConnections = 16;

// The --metrics-* flags as given (empty: not given).
struct MetricsFlags {
  std::string listen;
  std::string token_file;
  std::string tls_cert;
  std::string tls_key;
};

struct MetricsServerOptions {
  ListenAddress listen;  // An IP address (or localhost) and a port.
  std::string token;     // Empty: no token required.
  std::string tls_cert;  // PEM; empty: plain HTTP.
  std::string tls_key;   // PEM.
  // Called on the server's thread for each scrape.
  std::function<std::string(MetricsFormat)> render;
};

// Checks the flags: InvalidArgument or FailedPrecondition naming the flag
// and saying what is wrong (a malformed or unix: address, a token or TLS
// flag without --metrics-listen, a certificate without its key, an
// unreadable or too short token file). With --metrics-listen empty and no
// other flag: an empty `listen.host` (metrics off). A non-loopback address
// is the operator's explicit choice: allowed, and the daemon warns.
absl::StatusOr<MetricsServerOptions> MetricsOptionsFromFlags(
    const MetricsFlags& flags);

class MetricsServer final {
 public:
  // Binds and starts serving; FailedPrecondition naming the address when it
  // cannot (in use, no such address, TLS unavailable or a bad key).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      MetricsServerOptions options);
  // Stops serving (closes every connection, joins the thread).
  ~MetricsServer();

  int port() const { return port_; }
  // "http://127.0.0.1:9100/metrics" (https with TLS, [::1] for IPv6).
  std::string Url() const;

 private:
  explicit MetricsServer(MetricsServerOptions options)
      : options_(std::move(options)) {}

  const MetricsServerOptions options_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;

  friend struct MetricsServerAccess;
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_METRICS_SERVER_H_
