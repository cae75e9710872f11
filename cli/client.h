// The connection from one sockctl invocation to one agent: validated global
// options, the gRPC channel and stubs, the ClientContext every call uses
// (deadline + bearer token) and the mapping from a failed call to sockctl's
// error line and exit code.
//
//   AgentClient client(options);
//   auto ctx = client.NewContext();
//   grpc::Status s = client.agent().GetHostInfo(ctx.get(), req, &info);
//   if (!s.ok()) return client.Fail(s);
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/output_format.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockctl {

// Exit codes; main.cc and `sockctl --help` document them for users.
inline constexpr int kExitOk = 0;
// `health`: the service is not SERVING; `recv`: --exactly/--until not met;
// or the answer could not be printed.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitRpcBase = 10;  // + the gRPC status code.

// How much longer than an agent-side wait (Receive's wait, OpenClient's
// connect timeout) the call's deadline is, so that the answer to a wait
// that ran its full length still arrives.
inline constexpr absl::Duration kWaitSlack = absl::Seconds(5);

// The agent used when neither --agent nor $SOCKAGENT_ADDR names one: the
// owner-only UNIX socket the daemon serves by default
// (proto/local_agent_socket.h), "unix:/run/sockagent/sockagentd.sock" as
// root.
std::string DefaultAgent();
inline constexpr char kAgentEnv[] = "SOCKAGENT_ADDR";
inline constexpr char kTokenEnv[] = "SOCKAGENT_TOKEN";

// The Stream call as sockctl makes it: requests go out already serialized
// (grpc::ByteBuffer), so that a data chunk read from stdin reaches gRPC
// without the copy protobuf's serializer makes of a `bytes` field
// (stream_stdio.h, DataRequest); answers are parsed as usual. The wire is
// the same StreamRequest the agent's generated service reads.
using StreamCall =
    grpc::ClientReaderWriter<grpc::ByteBuffer, sockagent::v1::StreamResponse>;

// Prints `sockctl: <message>` to stderr and returns kExitUsage: for command
// lines CLI11 accepts but a verb cannot use (bad label, both an id and a
// selector, ...). No call has been made when this is returned.
int UsageError(absl::string_view message);

// Parses a positive, finite duration such as 5s, 500ms, 1m or 1.5s.
absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text);

// A failed call, as sockctl reports it.
struct CallFailure {
  int exit_code = kExitFailure;
  std::string code;  // The status code's name: "UNAVAILABLE", "NOT_FOUND".
  // gRPC's message when the agent could not be reached, else the agent's
  // (may be empty).
  std::string message;
  // The channel never got READY: the agent is down, refused or unreachable.
  bool unreachable = false;

  // "cannot reach the agent: <message>" when unreachable, else message.
  std::string Detail() const;
};

// TLS towards the agent: contents of the PEM files, not their paths.
struct TlsOptions {
  bool enabled = false;
  std::string ca;           // --tls-ca: trusted roots; "" = the system's.
  std::string cert;         // --tls-cert: client certificate (mutual TLS).
  std::string key;          // --tls-key.
  std::string server_name;  // --tls-server-name: expected name in the cert.
};

struct GlobalOptions {
  std::string agent;  // Already validated.
  absl::Duration timeout = absl::Seconds(5);
  OutputFormat output = OutputFormat::kTable;  // -o, --json, -q.
  std::string token;  // Empty: no authorization metadata.
  TlsOptions tls;
};

// gRPC's message for a connection that failed, with what it means in words
// when it is a TLS problem (the agent refused our certificate or sent none
// we trust, or one side does not speak TLS); else `message` unchanged.
std::string ExplainConnectFailure(absl::string_view message,
                                  const TlsOptions& tls);

class AgentClient final {
 public:
  explicit AgentClient(GlobalOptions options);

  const GlobalOptions& options() const { return options_; }
  sockagent::v1::SocketAgent::Stub& agent() { return *agent_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }
  // Starts a Stream call (see StreamCall) on this client's channel.
  std::unique_ptr<StreamCall> Stream(grpc::ClientContext* ctx);

  // A fresh context for one call: deadline now + --timeout, and the bearer
  // token when one is configured. Every verb builds its contexts here.
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  // The same with a deadline of at least `at_least` from now: for calls that
  // wait on the agent's side (Receive's wait, OpenClient's connect timeout)
  // longer than the default --timeout would allow.
  std::unique_ptr<grpc::ClientContext> NewContext(
      absl::Duration at_least) const;

  // What a failed call means: exit code kExitUnreachable when the channel
  // never got READY, otherwise kExitRpcBase + the status code. Any thread.
  CallFailure Describe(const grpc::Status& status) const;
  // Prints the one-line error for a failed call to stderr and returns
  // Describe(status).exit_code.
  int Fail(const grpc::Status& status) const;

 private:
  GlobalOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<sockagent::v1::SocketAgent::Stub> agent_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::unique_ptr<grpc::internal::RpcMethod> stream_rpc_;
};

}  // namespace sockctl
