// sockagentd's flags: their definitions (service/daemon_flags.cc, linked
// into the daemon only, so tests and the fuzzer that link the service
// library define none), and the option structs the daemon fills from them.
// `sockagentd --help` (daemon_cli.cc) lists every flag defined under
// service/, grouped by name, and tests/docs/readme_flags.py checks README's
// table against it.
//
//   absl::StatusOr<EngineOptions> engine = EngineOptionsFromFlags();
//   const std::string listen = absl::GetFlag(FLAGS_listen);
#ifndef SOCKAGENT_SERVICE_DAEMON_FLAGS_H_
#define SOCKAGENT_SERVICE_DAEMON_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/policy.h"

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(bool, insecure);
ABSL_DECLARE_FLAG(std::string, token_file);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(std::string, log_level);
ABSL_DECLARE_FLAG(std::string, log_format);
ABSL_DECLARE_FLAG(absl::Duration, log_refusal_interval);
ABSL_DECLARE_FLAG(absl::Duration, keepalive_time);
ABSL_DECLARE_FLAG(absl::Duration, keepalive_timeout);
ABSL_DECLARE_FLAG(absl::Duration, max_connection_idle);
ABSL_DECLARE_FLAG(int32_t, resolver_threads);
ABSL_DECLARE_FLAG(int32_t, resolver_queue);
ABSL_DECLARE_FLAG(int32_t, max_message_bytes);
ABSL_DECLARE_FLAG(uint32_t, max_servers);
ABSL_DECLARE_FLAG(uint32_t, max_connections);
ABSL_DECLARE_FLAG(uint64_t, recv_buffer_bytes);
ABSL_DECLARE_FLAG(uint64_t, send_buffer_bytes);
ABSL_DECLARE_FLAG(uint64_t, max_total_buffered_bytes);
ABSL_DECLARE_FLAG(uint64_t, max_send_bytes);
ABSL_DECLARE_FLAG(uint32_t, max_udp_sessions);
ABSL_DECLARE_FLAG(absl::Duration, udp_session_idle_timeout);
ABSL_DECLARE_FLAG(uint32_t, udp_reply_rate);
ABSL_DECLARE_FLAG(uint64_t, udp_reply_bytes_rate);
ABSL_DECLARE_FLAG(uint32_t, udp_reply_peer_ratio);
ABSL_DECLARE_FLAG(uint32_t, udp_reply_peer_grant);
ABSL_DECLARE_FLAG(uint32_t, closed_connections_kept);
ABSL_DECLARE_FLAG(absl::Duration, connect_timeout);
ABSL_DECLARE_FLAG(uint32_t, watch_queue_events);
ABSL_DECLARE_FLAG(uint32_t, max_watchers);
ABSL_DECLARE_FLAG(uint64_t, max_watch_bytes);
ABSL_DECLARE_FLAG(uint32_t, max_control_connections);
ABSL_DECLARE_FLAG(uint32_t, max_control_cancels_per_second);
ABSL_DECLARE_FLAG(uint32_t, max_control_unauthenticated_streams);
ABSL_DECLARE_FLAG(uint32_t, max_control_unauthenticated_streams_total);
ABSL_DECLARE_FLAG(absl::Duration, shutdown_grace);
ABSL_DECLARE_FLAG(std::string, allow_bind_ports);
ABSL_DECLARE_FLAG(std::string, allow_bind_hosts);
ABSL_DECLARE_FLAG(std::string, allow_dest);
ABSL_DECLARE_FLAG(std::string, allow_unix_paths);
ABSL_DECLARE_FLAG(std::string, allow_tls_paths);
ABSL_DECLARE_FLAG(bool, no_name_lookups);
ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, metrics_token_file);
ABSL_DECLARE_FLAG(std::string, metrics_tls_cert);
ABSL_DECLARE_FLAG(std::string, metrics_tls_key);

namespace sockagent {

// The --allow-* flags; INVALID_ARGUMENT naming the flag.
absl::StatusOr<Policy> PolicyFromFlags();

// The engine's options: limits, buffers, timeouts, the policy.
// INVALID_ARGUMENT for a zero limit or inconsistent sizes.
absl::StatusOr<EngineOptions> EngineOptionsFromFlags();

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_DAEMON_FLAGS_H_
