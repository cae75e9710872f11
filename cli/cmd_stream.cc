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
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/open_args.h"
#include "cli/output.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::StreamRequest;
using sockagent::v1::StreamResponse;

// Bytes read from stdin per message at most. Large enough that a file or a
// fast pipe moves in few messages (TOOLCHAIN.md: ~1 MiB messages are
// gRPC's fastest), well under gRPC's default 4 MiB.
constexpr size_t kStdinChunk = 1024 * 1024;

using StreamCall = grpc::ClientReaderWriter<StreamRequest, StreamResponse>;

// stdout is the bytes: json means events on stderr, and nothing else fits.
const OutputForms kStreamOutputs = {OutputFormat::kTable, OutputFormat::kJson};

// Writes all of `data` to fd 1; false once stdout is gone.
bool WriteStdout(const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(STDOUT_FILENO, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// Copies stdin into the call on its own thread until stdin ends (then
// WritesDone), the call breaks, or Stop() is called. Stop wakes a read
// that waits on a terminal or an idle pipe, so sockctl never hangs on
// stdin after the connection ended.
class StdinPump final {
 public:
  explicit StdinPump(StreamCall* call) : call_(call) {
    if (::pipe(wake_) != 0) wake_[0] = wake_[1] = -1;
    thread_ = std::thread([this] { Run(); });
  }
  ~StdinPump() {
    Stop();
    thread_.join();
    if (wake_[0] >= 0) ::close(wake_[0]);
    if (wake_[1] >= 0) ::close(wake_[1]);
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    if (wake_[1] >= 0) {
      char byte = 0;
      while (::write(wake_[1], &byte, 1) < 0 && errno == EINTR) {
      }
    }
  }

  // Blocks until stdin ended (true) or the pump stopped for another reason
  // (false); at most `timeout` (then false).
  bool WaitEnded(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                 [this] { return finished_; });
    return ended_;
  }
  bool ended() {
    std::lock_guard<std::mutex> lock(mu_);
    return ended_;
  }

 private:
  void Run() {
    GrowStdinPipe();
    // One message reused: its buffer keeps its capacity, so a message costs
    // no allocation and resize() zero-fills only what the last one did not
    // use (a fresh string per message cost a malloc and a 1 MiB memset
    // each: 12 % of this thread's samples when messages were ~95 KiB).
    StreamRequest request;
    std::string& chunk = *request.mutable_data();
    bool eof = false;
    while (!stopping_.load()) {
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      const int ready = ::poll(fds, wake_[0] >= 0 ? 2 : 1, -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[1].revents != 0 || stopping_.load()) break;
      chunk.resize(kStdinChunk);
      ssize_t n = ::read(STDIN_FILENO, chunk.data(), chunk.size());
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        std::cerr << "sockctl: reading stdin: " << std::strerror(errno) << "\n";
        eof = true;  // Treated as its end: what was read went out.
        break;
      }
      if (n == 0) {
        eof = true;
        break;
      }
      // A pipe hands over at most what it holds per read (64 KiB unless
      // GrowStdinPipe made room for a message): while more is ready at
      // once, fill the message (one message per 64 KiB ran the relay at half
      // of socat -b 1M's speed, BENCHMARKS.md benchmark 3). Interactive
      // input is sent as soon as it arrives: nothing waits here.
      size_t have = static_cast<size_t>(n);
      while (have < chunk.size()) {
        pollfd more = {STDIN_FILENO, POLLIN, 0};
        if (::poll(&more, 1, 0) != 1 || (more.revents & POLLIN) == 0) break;
        n = ::read(STDIN_FILENO, chunk.data() + have, chunk.size() - have);
        if (n <= 0) break;  // EOF or an error shows again on the next read.
        have += static_cast<size_t>(n);
      }
      chunk.resize(have);
      // Blocks while gRPC's flow control (the agent's backpressure) holds.
      if (!call_->Write(request)) break;  // The call ended.
    }
    if (eof) call_->WritesDone();
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = eof;
    finished_ = true;
    cv_.notify_all();
  }

  // A pipe holds 64 KiB by default, so while a Write waits the writer
  // blocks after 64 KiB and the next message carries little more (~95 KiB
  // on average from `head -c N /dev/zero`: 11k messages per GiB, each
  // costing thread hops on both sides). With room for a whole message the
  // writer keeps filling while we send. Best effort: a file or terminal is
  // left alone; above fs.pipe-max-size the call fails and nothing changes.
  static void GrowStdinPipe() {
    struct stat st;
    if (::fstat(STDIN_FILENO, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
    if (::fcntl(STDIN_FILENO, F_GETPIPE_SZ) >= static_cast<int>(kStdinChunk)) {
      return;
    }
    (void)::fcntl(STDIN_FILENO, F_SETPIPE_SZ, static_cast<int>(kStdinChunk));
  }

  StreamCall* const call_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;  // Run returned.
  bool ended_ = false;     // ... because stdin ended (WritesDone sent).
  std::thread thread_;
};

// After stdin ended, cancels the call once no datagram came for `idle`:
// UDP has no end of stream. Touch() on every datagram.
class UdpIdleWatch final {
 public:
  UdpIdleWatch(grpc::ClientContext* ctx, StdinPump* pump, absl::Duration idle)
      : ctx_(ctx), pump_(pump), idle_(idle) {
    thread_ = std::thread([this] { Run(); });
  }
  ~UdpIdleWatch() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }
  void Touch() {
    std::lock_guard<std::mutex> lock(mu_);
    last_ = absl::Now();
  }
  bool fired() const { return fired_.load(); }

 private:
  void Run() {
    // Until stdin ends (or the call does).
    while (!pump_->WaitEnded(absl::Milliseconds(200))) {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    last_ = std::max(last_, absl::Now());
    while (!done_) {
      const absl::Time due = last_ + idle_;
      const absl::Time now = absl::Now();
      if (now >= due) {
        fired_.store(true);
        ctx_->TryCancel();
        return;
      }
      cv_.wait_for(lock, absl::ToChronoNanoseconds(due - now));
    }
  }

  grpc::ClientContext* const ctx_;
  StdinPump* const pump_;
  const absl::Duration idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  absl::Time last_ = absl::InfinitePast();
  bool done_ = false;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

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
  std::unique_ptr<StreamCall> call = client.agent().Stream(ctx.get());
  call->Write(start);
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

  bool stdout_gone = false;
  bool idle_fired = false;
  std::string end_note;
  auto pump = std::make_unique<StdinPump>(call.get());
  std::unique_ptr<UdpIdleWatch> idle_watch;
  if (udp) {
    idle_watch = std::make_unique<UdpIdleWatch>(ctx.get(), pump.get(), *idle);
  }
  while (call->Read(&response)) {
    switch (response.kind_case()) {
      case StreamResponse::kData:
        stdout_gone = !WriteStdout(response.data());
        break;
      case StreamResponse::kDatagram:
        if (idle_watch != nullptr) idle_watch->Touch();
        stdout_gone = !WriteStdout(response.datagram().data());
        break;
      case StreamResponse::kEndOfStream: {
        print_event(response);
        // The words of conn list's REASON column ("peer closed"); an
        // error's detail is part of them, other details follow.
        const auto& eos = response.end_of_stream();
        const std::string reason = CloseReasonText(eos.reason(), eos.detail());
        end_note = reason.empty() ? "end of stream"
                                  : absl::StrCat("end of stream: ", reason);
        if (!eos.detail().empty() &&
            eos.reason() != sockagent::v1::CLOSE_REASON_ERROR) {
          absl::StrAppend(&end_note, " (", eos.detail(), ")");
        }
        break;
      }
      default:
        break;
    }
    if (stdout_gone) {
      ctx->TryCancel();
      break;
    }
  }
  // The call is over (or cancelled), so a Write in progress returns: the
  // threads end before Finish.
  if (idle_watch != nullptr) {
    idle_fired = idle_watch->fired();
    idle_watch.reset();
  }
  pump->Stop();
  pump.reset();
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
