#include "cli/open_args.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"

namespace sockctl {

using sockagent::v1::OpenClientRequest;

namespace {

absl::Status BuildRemote(const OpenArgs& args, absl::string_view verb,
                         OpenClientRequest& request) {
  auto* remote = request.mutable_remote();
  if (args.unix_opt->count() > 0) {
    if (!args.host.empty() || !args.port.empty()) {
      return absl::InvalidArgumentError(
          "with --unix PATH give no HOST or PORT");
    }
    if (args.unix_path.empty()) {
      return absl::InvalidArgumentError("--unix needs a socket path");
    }
    request.set_transport(sockagent::v1::TRANSPORT_UNIX);
    remote->set_unix_path(args.unix_path);
    return absl::OkStatus();
  }
  request.set_transport(args.udp ? sockagent::v1::TRANSPORT_UDP
                                 : sockagent::v1::TRANSPORT_TCP);
  if (args.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb, " needs HOST PORT (or --unix PATH)"));
  }
  // HOST may also be HOST:PORT or [IPV6]:PORT, or [IPV6] before PORT.
  absl::StatusOr<bool> has_port = ParseHostPort(args.host, remote);
  if (!has_port.ok()) return has_port.status();
  if (*has_port && !args.port.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the port is given twice: in '", args.host, "' and as '",
                     args.port, "'"));
  }
  if (!*has_port) {
    if (args.port.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(verb,
                       " needs a PORT (a number or a service name such as "
                       "www)"));
    }
    if (absl::Status s = ParsePort(args.port, remote); !s.ok()) return s;
  }
  if (remote->host().empty()) {
    return absl::InvalidArgumentError("empty HOST");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenClientRequest> BuildOpenRequest(const OpenArgs& args,
                                                   absl::string_view verb) {
  OpenClientRequest request;
  if (absl::Status s = BuildRemote(args, verb, request); !s.ok()) return s;
  if (args.ipv4) request.set_family(sockagent::v1::FAMILY_IPV4);
  if (args.ipv6) request.set_family(sockagent::v1::FAMILY_IPV6);
  if (!args.source.empty()) {
    absl::StatusOr<bool> has_port =
        ParseHostPort(args.source, request.mutable_source());
    if (!has_port.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --source: ", has_port.status().message()));
    }
  }
  request.set_tcp_nodelay(args.nodelay);
  auto* keepalive = request.mutable_keepalive();
  // Any keepalive setting turns keepalive on.
  keepalive->set_enable(args.keepalive || !args.keepalive_idle.empty() ||
                        !args.keepalive_interval.empty() ||
                        args.keepalive_count > 0);
  keepalive->set_count(args.keepalive_count);
  for (absl::Status s : {
           ParseDurationFlag("--connect-timeout", args.connect_timeout,
                             request.mutable_connect_timeout()),
           ParseDurationFlag("--keepalive-idle", args.keepalive_idle,
                             keepalive->mutable_idle()),
           ParseDurationFlag("--keepalive-interval", args.keepalive_interval,
                             keepalive->mutable_interval()),
           ParseDurationFlag("--ttl", args.ttl, request.mutable_ttl()),
           ParseDurationFlag("--idle-timeout", args.idle_timeout,
                             request.mutable_idle_timeout()),
       }) {
    if (!s.ok()) return s;
  }
  if (!keepalive->enable()) request.clear_keepalive();
  if (absl::Status s = ParseLabels(args.labels, request.mutable_labels());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ApplyClientTls(args.tls, &request); !s.ok()) return s;
  return request;
}

void AddOpenOptions(CLI::App* app, OpenArgs& args) {
  app->add_option("HOST", args.host,
                  "Host name or address (also HOST:PORT, [IPV6]:PORT)");
  app->add_option("PORT", args.port, "Port number or service name (www)");
  CLI::Option* tcp =
      app->add_flag("--tcp", args.tcp, "TCP (the default)")->group("Transport");
  CLI::Option* udp =
      app->add_flag("--udp", args.udp, "UDP (a connected UDP socket)")
          ->group("Transport");
  args.unix_opt = app->add_option("--unix", args.unix_path,
                                  "UNIX stream socket at PATH (no HOST "
                                  "PORT; '@name': abstract)")
                      ->type_name("PATH")
                      ->group("Transport");
  tcp->excludes(udp)->excludes(args.unix_opt);
  udp->excludes(args.unix_opt);
  CLI::Option* v4 =
      app->add_flag("-4", args.ipv4, "IPv4 only")->group("Connect");
  CLI::Option* v6 =
      app->add_flag("-6", args.ipv6, "IPv6 only")->group("Connect");
  v4->excludes(v6);
  app->add_option("--connect-timeout", args.connect_timeout,
                  "Give up connecting after D (default: the agent's, 10s, "
                  "within --timeout)")
      ->type_name("D")
      ->group("Connect");
  app->add_option("--source", args.source,
                  "Bind to HOST[:PORT] first ([IPV6]:PORT, :PORT)")
      ->type_name("ADDR")
      ->group("Connect");
  app->add_flag("--nodelay", args.nodelay, "TCP_NODELAY")->group("Socket");
  app->add_flag("--keepalive", args.keepalive, "SO_KEEPALIVE")->group("Socket");
  app->add_option("--keepalive-idle", args.keepalive_idle,
                  "TCP_KEEPIDLE (implies --keepalive)")
      ->type_name("D")
      ->group("Socket");
  app->add_option("--keepalive-interval", args.keepalive_interval,
                  "TCP_KEEPINTVL (implies --keepalive)")
      ->type_name("D")
      ->group("Socket");
  app->add_option("--keepalive-count", args.keepalive_count,
                  "TCP_KEEPCNT (implies --keepalive)")
      ->check(CLI::PositiveNumber)
      ->group("Socket");
  app->add_option("--label", args.labels, "KEY=VALUE; repeat for more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->group("Lifetime");
  app->add_option("--ttl", args.ttl, "Close by itself after D")
      ->type_name("D")
      ->group("Lifetime");
  app->add_option("--idle-timeout", args.idle_timeout,
                  "Close after D without a byte either way")
      ->type_name("D")
      ->group("Lifetime");
  AddClientTlsOptions(app, args.tls);
}

}  // namespace sockctl
