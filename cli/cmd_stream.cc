// `connect` and `attach`: netcat through the agent, on the Stream RPC.
// stdin goes to the connection, the connection's bytes to stdout, binary
// safe, with gRPC flow control as the backpressure both ways (a slow stdout
// slows the remote peer; a slow peer slows the reading of stdin).
//
// When it exits: TCP and UNIX when both directions are done (stdin ended,
// which sends FIN, and the peer closed), or when the connection ends by
// itself; UDP once stdin ended and no datagram arrived for --idle. Exit 0
// for an orderly end, the usual codes for a failed call (an agent that
// reset or lost the connection: 10 + ABORTED/UNAVAILABLE).
//
// stdout carries only the connection's bytes, so -o json puts the stream's
// events (the first message naming the connection, the end of stream with
// its reason) on stderr, one protobuf JSON line each: a script reads the
// bytes from stdout and what happened from stderr's lines that start with
// '{' (sockctl's own messages start with "sockctl:").
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/open_args.h"
#include "cli/output.h"
#include "cli/proto_text.h"
#include "cli/stream_stdio.h"

namespace sockctl {
namespace {

using sockagent::v1::StreamRequest;
using sockagent::v1::StreamResponse;

// stdout is the bytes: json means events on stderr, and nothing else fits.
const OutputForms kStreamOutputs = {OutputFormat::kTable, OutputFormat::kJson};

struct StreamArgs {
  OpenArgs open;   // connect
  std::string id;  // attach
  std::string idle = "2s";
  bool verbose = false;
};

int RunStream(AgentClient& client, const StreamArgs& args, bool attach) {
  StreamRequest start;
  if (attach) {
    if (args.id.empty()) return UsageError("attach needs a connection ID");
    start.mutable_start()->set_attach_connection_id(args.id);
  } else {
    absl::StatusOr<sockagent::v1::OpenClientRequest> open =
        BuildOpenRequest(args.open, "connect");
    if (!open.ok()) return UsageError(open.status().message());
    *start.mutable_start()->mutable_open() = *std::move(open);
  }
  absl::StatusOr<absl::Duration> idle = ParseDurationFlag("--idle", args.idle);
  if (!idle.ok()) return UsageError(idle.status().message());

  // No deadline: the session lasts as long as the bytes flow.
  auto ctx = client.NewContext();
  ctx->set_deadline(std::chrono::system_clock::time_point::max());
  std::unique_ptr<StreamCall> call = client.Stream(ctx.get());
  call->Write(SerializedRequest(start));
  StreamResponse response;
  if (!call->Read(&response) || !response.has_connection()) {
    grpc::Status status = call->Finish();
    if (status.ok()) {
      std::cerr << "sockctl: the agent ended the stream before naming its "
                   "connection\n";
      return kExitFailure;
    }
    return client.Fail(status);
  }
  // -o json: the stream's events on stderr, one JSON line each.
  const bool json_events = client.options().output == OutputFormat::kJson;
  const auto print_event = [json_events](const StreamResponse& event) {
    std::string line;
    if (json_events && FormatJson(event, &line)) std::cerr << line + "\n";
  };
  print_event(response);
  const sockagent::v1::Connection& conn = response.connection();
  const bool udp = conn.transport() == sockagent::v1::TRANSPORT_UDP;
  if (args.verbose && !json_events) {
    std::cerr << "sockctl: " << (attach ? "attached to " : "connected ")
              << conn.id() << " " << FormatAddress(conn.local()) << " -> "
              << FormatAddress(conn.remote()) << "\n";
  }

  std::string end_note;
  auto feeder = std::make_unique<StdinFeeder>(
      StdinFeeder::Options{.chunk = udp ? kDatagramChunk : kStreamChunk,
                           .one_read_per_message = udp,
                           .grow_pipe = !udp});
  feeder->Attach(call.get());
  std::unique_ptr<UdpIdle> idle_watch;
  if (udp) {
    idle_watch = std::make_unique<UdpIdle>(ctx.get(), feeder.get(), *idle);
  }
  const bool stdout_gone = !CopyStreamToStdout(
      *call, *ctx, idle_watch.get(), [&](const StreamResponse& event) {
        print_event(event);
        // The words of conn list's REASON column ("peer closed"); an
        // error's detail is part of them, other details follow.
        const auto& eos = event.end_of_stream();
        const std::string reason = CloseReasonText(eos.reason(), eos.detail());
        end_note = reason.empty() ? "end of stream"
                                  : absl::StrCat("end of stream: ", reason);
        if (!eos.detail().empty() &&
            eos.reason() != sockagent::v1::CLOSE_REASON_ERROR) {
          absl::StrAppend(&end_note, " (", eos.detail(), ")");
        }
      });
  // The call is over (or cancelled), so a Write in progress returns: the
  // threads end before Finish.
  bool idle_fired = false;
  if (idle_watch != nullptr) {
    idle_fired = idle_watch->fired();
    idle_watch.reset();
  }
  feeder->Release(ctx.get());
  feeder.reset();
  grpc::Status status = call->Finish();
  if (args.verbose && !json_events && !end_note.empty()) {
    std::cerr << "sockctl: " << end_note << "\n";
  }
  if (stdout_gone) {
    std::cerr << "sockctl: stdout closed\n";
    return kExitFailure;
  }
  // UDP: our own cancel after --idle is the normal end.
  if (idle_fired && status.error_code() == grpc::StatusCode::CANCELLED) {
    return kExitOk;
  }
  return status.ok() ? kExitOk : client.Fail(status);
}

void AddConnect(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<StreamArgs>();
  CLI::App* connect = app.add_subcommand(
      "connect",
      "netcat from the agent's host: connect to HOST PORT there (Stream) "
      "and copy stdin to the connection and the connection to stdout");
  connect->footer(
      "Exits when both directions are done (stdin ended: FIN sent; the peer "
      "closed), or when the connection ends; UDP: once stdin ended and no "
      "datagram came for --idle. The connection closes when sockctl exits.\n"
      "-o json: stdout stays the bytes; the connection (first) and the end "
      "of stream\n(with its reason) go to stderr as protobuf JSON lines "
      "({\"connection\":{...}},\n{\"endOfStream\":{...}}) instead of -v's "
      "words.\n\n"
      "Examples:\n"
      "  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockctl connect example.com 80\n"
      "  sockctl connect --udp 127.0.0.1 53 < query.bin > answer.bin\n"
      "  sockctl --agent db1:7878 connect 10.0.0.5 5432 < /dev/null");
  AddOpenOptions(connect, args->open);
  connect
      ->add_option("--idle", args->idle,
                   "UDP: exit this long after stdin ended and the last "
                   "datagram came (default 2s)")
      ->type_name("D");
  connect->add_flag("-v,--verbose", args->verbose,
                    "Name the connection and how it ended on stderr");
  commands.push_back({connect,
                      [args](AgentClient& client) {
                        return RunStream(client, *args, /*attach=*/false);
                      },
                      nullptr, kStreamOutputs});
}

void AddAttach(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<StreamArgs>();
  CLI::App* attach = app.add_subcommand(
      "attach",
      "Attach stdin/stdout to an existing connection (Stream): bytes it "
      "already buffered come first; the connection stays open after");
  attach->add_option("ID", args->id, "Connection id, e.g. conn-1")->required();
  attach
      ->add_option("--idle", args->idle,
                   "UDP: exit this long after stdin ended and the last "
                   "datagram came (default 2s)")
      ->type_name("D");
  attach->add_flag("-v,--verbose", args->verbose,
                   "Name the connection and how it ended on stderr");
  attach->footer(
      "-o json: stdout stays the bytes; the connection (first) and the end "
      "of stream\n(with its reason) go to stderr as protobuf JSON lines "
      "instead of -v's words.");
  commands.push_back({attach,
                      [args](AgentClient& client) {
                        return RunStream(client, *args, /*attach=*/true);
                      },
                      nullptr, kStreamOutputs});
}

}  // namespace

void AddStreamCommands(CLI::App& app, Commands& commands) {
  AddConnect(app, commands);
  AddAttach(app, commands);
}

}  // namespace sockctl
