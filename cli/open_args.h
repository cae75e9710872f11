// The options of a client connection, shared by `client open` (OpenClient)
// and `connect` (Stream): HOST PORT or --unix PATH, transport, family,
// source, socket options, labels, lifetime.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/tls_args.h"
#include "sockagent/v1/agent.pb.h"

namespace sockctl {

struct OpenArgs {
  std::string host;
  std::string port;
  bool tcp = false;
  bool udp = false;
  std::string unix_path;
  bool ipv4 = false;
  bool ipv6 = false;
  std::string connect_timeout;
  std::string source;
  bool nodelay = false;
  bool keepalive = false;
  std::string keepalive_idle;
  std::string keepalive_interval;
  uint32_t keepalive_count = 0;
  std::vector<std::string> labels;
  std::string ttl;
  std::string idle_timeout;
  ClientTlsArgs tls;
  CLI::Option* unix_opt = nullptr;
};

// Adds HOST, PORT and the connection options to `app`; `args` must outlive
// the parse.
void AddOpenOptions(CLI::App* app, OpenArgs& args);

// The request the parsed options describe; InvalidArgument (naming `verb`,
// e.g. "client open") for a command line that does not describe one.
absl::StatusOr<sockagent::v1::OpenClientRequest> BuildOpenRequest(
    const OpenArgs& args, absl::string_view verb);

}  // namespace sockctl
