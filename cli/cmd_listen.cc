// `listen`: netcat's listen mode (`nc -l PORT`) through the agent. Starts a
// hold server on the agent's host, attaches stdin/stdout to the first
// connection it accepts (the Stream RPC, as `attach` does) and, when that
// connection ends, stops the server and exits. With --keep-open (-k, as in
// ncat) it serves the connections one after another until interrupted.
//
//   sockctl listen 9000                 # TCP on 127.0.0.1:9000
//   sockctl listen --udp 0              # "listening on 127.0.0.1:41234"
//   sockctl listen -k "" 8080           # every address, one client a time
//
// Lifetime: everything it starts carries the label
// sockctl-listen=<pid>-<random>; on every exit path that sockctl survives
// (end of the connection, Ctrl-C, SIGTERM, a failed call) the server is
// stopped and the connections carrying the label are closed. Only SIGKILL
// leaves them behind (`sockctl server stop --label sockctl-listen=...`).
//
// When a session ends: TCP when the peer closed (stdin is then no longer
// sent: nc -l does the same) or the connection ended otherwise; stdin's end
// sends FIN and keeps reading. UDP when stdin ended and no datagram came for
// --idle, or when the peer session expired (--session-idle).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/proto_text.h"
#include "cli/stream_stdio.h"

namespace sockctl {
namespace {

using sockagent::v1::StreamRequest;
using sockagent::v1::StreamResponse;

// The label that marks what one `listen` started, for its cleanup.
constexpr char kListenLabel[] = "sockctl-listen";
// How often the interrupt thread looks at the interrupt flag.
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

// "conn-17" -> 17; nullopt for another shape.
std::optional<uint64_t> IdNumber(absl::string_view id) {
  const size_t dash = id.rfind('-');
  uint64_t n = 0;
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(id.substr(dash + 1), &n)) {
    return std::nullopt;
  }
  return n;
}

// Cancels the calls in flight once SIGINT or SIGTERM arrives, so that a
// blocked Read returns and the cleanup runs. A call added after the signal
// is cancelled at once.
class InterruptCanceller final {
 public:
  InterruptCanceller() {
    absl::StatusOr<std::unique_ptr<InterruptFlag>> flag =
        InterruptFlag::Install();
    if (!flag.ok()) return;  // Then signals end the process as usual.
    flag_ = *std::move(flag);
    thread_ = std::thread([this] { Run(); });
  }
  ~InterruptCanceller() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  InterruptCanceller(const InterruptCanceller&) = delete;
  InterruptCanceller& operator=(const InterruptCanceller&) = delete;

  void Add(grpc::ClientContext* ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    contexts_.insert(ctx);
    if (raised_) ctx->TryCancel();
  }
  void Remove(grpc::ClientContext* ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    contexts_.erase(ctx);
  }
  bool raised() const { return flag_ != nullptr && flag_->raised(); }

 private:
  void Run() {
    for (;;) {
      if (flag_->WaitFor(kPollInterval)) break;
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    raised_ = true;
    for (grpc::ClientContext* ctx : contexts_) ctx->TryCancel();
  }

  std::unique_ptr<InterruptFlag> flag_;
  std::mutex mu_;
  std::set<grpc::ClientContext*> contexts_;  // Calls in flight.
  bool raised_ = false;
  bool done_ = false;
  std::thread thread_;
};

struct ListenArgs {
  std::vector<std::string> address;  // [HOST] PORT
  bool udp = false;
  bool keep_open = false;
  bool ipv4 = false;
  bool ipv6 = false;
  bool verbose = false;
  std::string idle = "2s";
  std::string session_idle;
  std::vector<std::string> labels;
};

absl::StatusOr<sockagent::v1::StartServerRequest> BuildRequest(
    const ListenArgs& args, const std::string& token) {
  sockagent::v1::StartServerRequest request;
  request.set_transport(args.udp ? sockagent::v1::TRANSPORT_UDP
                                 : sockagent::v1::TRANSPORT_TCP);
  // Loopback unless told otherwise, as `server start`: an agent serves a
  // host, and a port open to every network should be asked for.
  std::string host = args.ipv6 ? "::1" : "127.0.0.1";
  const std::string* port = &args.address.back();
  if (args.address.size() == 2) host = args.address.front();
  request.mutable_bind()->set_host(host);
  if (absl::Status s = ParsePort(*port, request.mutable_bind()); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid PORT '", *port, "': ", s.message()));
  }
  if (args.ipv4) request.set_family(sockagent::v1::FAMILY_IPV4);
  if (args.ipv6) request.set_family(sockagent::v1::FAMILY_IPV6);
  request.mutable_behavior()->mutable_hold();
  if (absl::Status s = ParseLabels(args.labels, request.mutable_labels());
      !s.ok()) {
    return s;
  }
  if (request.labels().contains(kListenLabel)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--label ", kListenLabel, " is set by listen itself"));
  }
  (*request.mutable_labels())[kListenLabel] = token;
  if (args.udp) {
    if (absl::Status s = ParseDurationFlag(
            "--session-idle", args.session_idle,
            request.mutable_udp()->mutable_session_idle_timeout());
        !s.ok()) {
      return s;
    }
  } else if (!args.session_idle.empty()) {
    return absl::InvalidArgumentError("--session-idle goes with --udp");
  }
  return request;
}

// "<pid>-<8 random hex digits>": tells this run's objects from another's.
std::string NewToken() {
  std::random_device random;
  return absl::StrFormat("%d-%08x", ::getpid(), random());
}

class Listener final {
 public:
  Listener(AgentClient& client, const ListenArgs& args, absl::Duration idle)
      : client_(client), args_(args), idle_(idle) {}

  int Run(const sockagent::v1::StartServerRequest& request) {
    token_ = request.labels().at(kListenLabel);
    {
      sockagent::v1::StartServerResponse response;
      auto ctx = client_.NewContext();
      grpc::Status status =
          client_.agent().StartServer(ctx.get(), request, &response);
      if (!status.ok()) return client_.Fail(status);
      server_ = response.server();
    }
    const bool port_zero =
        request.bind().has_port() && request.bind().port() == 0;
    if (port_zero || args_.verbose) {
      for (const auto& address : server_.local_addresses()) {
        std::cerr << "listening on " << FormatAddress(address) << "\n";
      }
    }
    if (args_.verbose) {
      std::cerr << "sockctl: server " << server_.id() << ", label "
                << kListenLabel << "=" << token_ << "\n";
    }
    const int rc = Serve();
    Cleanup();
    if (canceller_.raised()) return kExitInterrupted;
    return rc;
  }

 private:
  // Sessions until the end; the exit code.
  int Serve() {
    watch_ctx_ = client_.NewContext();
    watch_ctx_->set_deadline(std::chrono::system_clock::time_point::max());
    canceller_.Add(watch_ctx_.get());
    sockagent::v1::WatchRequest watch_request;
    watch_request.set_server_id(server_.id());
    watch_request.set_snapshot(true);
    watch_request.add_kinds(sockagent::v1::EVENT_KIND_CONNECTION_ACCEPTED);
    watch_request.add_kinds(sockagent::v1::EVENT_KIND_SERVER_STOPPED);
    watch_ = client_.agent().Watch(watch_ctx_.get(), watch_request);

    const bool tcp = !args_.udp;
    int rc = kExitOk;
    for (bool first = true; !canceller_.raised(); first = false) {
      std::optional<sockagent::v1::Connection> conn = NextConnection();
      if (!conn.has_value()) {
        rc = watch_rc_;
        break;
      }
      // nc -l takes one connection: stop listening as soon as it came (a
      // UDP server must stay: its peer sessions live on its socket).
      if (first && tcp && !args_.keep_open) StopServer();
      // With -k a failed session was reported and the next one is served.
      rc = Session(*conn);
      if (rc == kExitNoSession) rc = kExitOk;
      if (!args_.keep_open || stdout_gone_ || rc == kExitInterrupted) break;
    }
    canceller_.Remove(watch_ctx_.get());
    if (!watch_finished_) {
      watch_ctx_->TryCancel();
      (void)watch_->Finish();
    }
    return rc;
  }

  // The next accepted connection in order, waiting for one; nullopt when
  // the watch ended (interrupted, the server stopped, a failure: watch_rc_
  // says which exit code that means).
  std::optional<sockagent::v1::Connection> NextConnection() {
    while (pending_.empty()) {
      if (list_needed_) {
        list_needed_ = false;
        if (!ListPending()) return std::nullopt;
        continue;
      }
      sockagent::v1::Event event;
      if (!watch_->Read(&event)) {
        grpc::Status status = watch_->Finish();
        watch_finished_ = true;
        watch_rc_ =
            canceller_.raised() || status.ok() ? kExitOk : client_.Fail(status);
        return std::nullopt;
      }
      switch (event.kind()) {
        case sockagent::v1::EVENT_KIND_SNAPSHOT_CONNECTION:
        case sockagent::v1::EVENT_KIND_CONNECTION_ACCEPTED:
          Offer(event.connection());
          break;
        case sockagent::v1::EVENT_KIND_EVENTS_LOST:
          list_needed_ = true;
          break;
        case sockagent::v1::EVENT_KIND_SERVER_STOPPED:
          if (!stopped_by_us_) {
            std::cerr << "sockctl: server " << server_.id()
                      << " stopped: " << event.message() << "\n";
            watch_rc_ = kExitFailure;
            return std::nullopt;
          }
          break;
        default:
          break;
      }
    }
    sockagent::v1::Connection next = std::move(pending_.front());
    pending_.pop_front();
    return next;
  }

  // Queues a connection not seen before (ids grow: the number orders them).
  void Offer(const sockagent::v1::Connection& conn) {
    std::optional<uint64_t> num = IdNumber(conn.id());
    if (!num.has_value() || *num <= last_offered_) return;
    if (conn.state() == sockagent::v1::CONNECTION_STATE_CLOSED) return;
    last_offered_ = *num;
    pending_.push_back(conn);
  }

  // After lost events: the server's open connections from the agent.
  bool ListPending() {
    sockagent::v1::ListConnectionsRequest request;
    request.set_server_id(server_.id());
    sockagent::v1::ListConnectionsResponse response;
    auto ctx = client_.NewContext();
    grpc::Status status =
        client_.agent().ListConnections(ctx.get(), request, &response);
    if (!status.ok()) {
      watch_rc_ = client_.Fail(status);
      return false;
    }
    std::vector<sockagent::v1::Connection> conns(response.connections().begin(),
                                                 response.connections().end());
    std::sort(conns.begin(), conns.end(), [](const auto& a, const auto& b) {
      return IdNumber(a.id()).value_or(0) < IdNumber(b.id()).value_or(0);
    });
    for (const auto& conn : conns) Offer(conn);
    return true;
  }

  // One connection attached to stdin/stdout until it ends; the exit code,
  // or kExitNoSession when it was gone before it could be attached.
  int Session(const sockagent::v1::Connection& accepted) {
    auto ctx = client_.NewContext();
    ctx->set_deadline(std::chrono::system_clock::time_point::max());
    canceller_.Add(ctx.get());
    std::unique_ptr<StreamCall> call = client_.Stream(ctx.get());
    StreamRequest start;
    start.mutable_start()->set_attach_connection_id(accepted.id());
    call->Write(SerializedRequest(start));
    StreamResponse response;
    if (!call->Read(&response) || !response.has_connection()) {
      grpc::Status status = call->Finish();
      canceller_.Remove(ctx.get());
      if (canceller_.raised()) return kExitInterrupted;
      // Closed (or reset) before we came: nothing to serve.
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
          status.error_code() == grpc::StatusCode::NOT_FOUND) {
        if (args_.verbose) {
          std::cerr << "sockctl: " << accepted.id() << " from "
                    << FormatAddress(accepted.remote())
                    << " ended before it was attached\n";
        }
        return kExitNoSession;
      }
      return status.ok() ? kExitFailure : client_.Fail(status);
    }
    const sockagent::v1::Connection conn = response.connection();
    if (args_.verbose) {
      std::cerr << "connection from " << FormatAddress(conn.remote()) << " ("
                << conn.id() << ")\n";
    }
    feeder_.Attach(call.get());
    std::unique_ptr<UdpIdle> udp_idle;
    if (args_.udp) {
      udp_idle = std::make_unique<UdpIdle>(ctx.get(), &feeder_, idle_);
    }
    bool released = false;
    std::string end_note;
    stdout_gone_ = !CopyStreamToStdout(
        *call, *ctx, udp_idle.get(), [&](const StreamResponse& event) {
          // The peer closed (or the connection ended here): no more stdin
          // for it; half-close so that the call can finish.
          sockagent::v1::Connection ended;  // In the tables' words.
          ended.set_close_reason(event.end_of_stream().reason());
          ended.set_close_detail(event.end_of_stream().detail());
          end_note = CloseReasonText(ended);
          if (!released) {
            released = true;
            if (!feeder_.Release(ctx.get())) call->WritesDone();
          }
        });
    // The call is over (or cancelled), so a write in progress returns.
    bool idle_fired = false;
    if (udp_idle != nullptr) {
      idle_fired = udp_idle->fired();
      udp_idle.reset();
    }
    if (!released) feeder_.Release(ctx.get());
    grpc::Status status = call->Finish();
    canceller_.Remove(ctx.get());
    if (args_.verbose) {
      std::cerr << "sockctl: " << conn.id() << " ended"
                << (end_note.empty() ? "" : ": ") << end_note << "\n";
    }
    if (stdout_gone_) {
      std::cerr << "sockctl: stdout closed\n";
      return kExitFailure;
    }
    if (canceller_.raised()) return kExitInterrupted;
    if (idle_fired && status.error_code() == grpc::StatusCode::CANCELLED) {
      return kExitOk;
    }
    if (released && status.error_code() == grpc::StatusCode::CANCELLED) {
      return kExitOk;  // Our own cancel of a write the peer never took.
    }
    return status.ok() ? kExitOk : client_.Fail(status);
  }

  void StopServer() {
    stopped_by_us_ = true;
    sockagent::v1::StopServerRequest request;
    request.set_id(server_.id());
    sockagent::v1::StopServerResponse response;
    auto ctx = client_.NewContext();
    grpc::Status status =
        client_.agent().StopServer(ctx.get(), request, &response);
    if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) {
      client_.Fail(status);
    }
  }

  // Whatever happened: the server stopped, its connections closed (also
  // those accepted while a session ran and never served).
  void Cleanup() {
    StopServer();
    sockagent::v1::CloseConnectionRequest request;
    (*request.mutable_label_selector())[kListenLabel] = token_;
    sockagent::v1::CloseConnectionResponse response;
    auto ctx = client_.NewContext();
    grpc::Status status =
        client_.agent().CloseConnection(ctx.get(), request, &response);
    if (!status.ok()) client_.Fail(status);
  }

  // Session(): the connection was gone before it could be attached.
  static constexpr int kExitNoSession = -1;

  AgentClient& client_;
  const ListenArgs& args_;
  const absl::Duration idle_;
  InterruptCanceller canceller_;
  StdinFeeder feeder_{{.chunk = args_.udp ? kDatagramChunk : kStreamChunk,
                       .one_read_per_message = args_.udp,
                       .grow_pipe = false}};
  std::string token_;
  sockagent::v1::Server server_;
  std::unique_ptr<grpc::ClientContext> watch_ctx_;
  std::unique_ptr<grpc::ClientReader<sockagent::v1::Event>> watch_;
  bool watch_finished_ = false;
  int watch_rc_ = kExitOk;
  bool list_needed_ = false;
  std::deque<sockagent::v1::Connection> pending_;
  uint64_t last_offered_ = 0;
  bool stopped_by_us_ = false;
  bool stdout_gone_ = false;
};

int RunListen(AgentClient& client, const ListenArgs& args) {
  absl::StatusOr<sockagent::v1::StartServerRequest> request =
      BuildRequest(args, NewToken());
  if (!request.ok()) return UsageError(request.status().message());
  absl::StatusOr<absl::Duration> idle = ParseDurationFlag("--idle", args.idle);
  if (!idle.ok()) return UsageError(idle.status().message());
  // A closed stdout must be an error we clean up after, not a SIGPIPE that
  // kills sockctl and leaves the server behind.
  std::signal(SIGPIPE, SIG_IGN);
  Listener listener(client, args, *idle);
  return listener.Run(*request);
}

}  // namespace

void AddListenCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<ListenArgs>();
  CLI::App* listen = app.add_subcommand(
      "listen",
      "netcat's listen mode on the agent's host (nc -l): start a server, "
      "copy its first connection to stdout and stdin to it, then stop");
  listen->footer(
      "[HOST] PORT: HOST defaults to 127.0.0.1 (::1 with -6), unlike nc -l, "
      "which binds every address: give \"\" (every address), 0.0.0.0 or :: "
      "for that. PORT 0 picks a free port and prints 'listening on ADDR' on "
      "stderr.\n"
      "TCP: ends when the peer closes (stdin's end sends FIN first); "
      "further connections are refused unless -k. UDP: datagrams of the "
      "first peer go to stdout as they are; each read of stdin (a line on a "
      "terminal) goes back to it as one datagram; ends once stdin ended and "
      "no datagram came for --idle, or the peer session expired. The server "
      "is stopped on exit, also on Ctrl-C/SIGTERM (exit 130).\n"
      "Examples:\n"
      "  sockctl listen 9000 > upload.bin\n"
      "  sockctl listen --udp 0\n"
      "  sockctl listen -k \"\" 8080 < reply.txt");
  listen
      ->add_option("ADDRESS", args->address,
                   "[HOST] PORT: port number or service name (0: pick one)")
      ->expected(1, 2)
      ->required();
  listen->add_flag("--udp", args->udp, "UDP instead of TCP");
  listen->add_flag("-k,--keep-open", args->keep_open,
                   "After a connection (UDP: peer) ends, serve the next, one "
                   "at a time, until interrupted");
  CLI::Option* v4 = listen->add_flag("-4", args->ipv4, "IPv4 only");
  CLI::Option* v6 =
      listen->add_flag("-6", args->ipv6, "IPv6 only (default host ::1)");
  v4->excludes(v6);
  listen
      ->add_option("--idle", args->idle,
                   "UDP: end this long after stdin ended and the last "
                   "datagram came (default 2s)")
      ->type_name("D");
  listen
      ->add_option("--session-idle", args->session_idle,
                   "UDP: the peer session expires after D without a datagram "
                   "(default: the agent's, 60s)")
      ->type_name("D");
  listen
      ->add_option("--label", args->labels,
                   "KEY=VALUE on the server and its connections; repeat for "
                   "more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  listen->add_flag("-v,--verbose", args->verbose,
                   "On stderr: the bound address, each connection and how it "
                   "ended");
  commands.push_back({listen, [args](AgentClient& client) {
                        return RunListen(client, *args);
                      }});
}

}  // namespace sockctl
