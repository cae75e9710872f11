// Verbs that move bytes: `send` (Send, in chunks, retrying while the
// connection's send buffer is full) and `recv` (one Receive, with the
// exactly-N and until-delimiter conditions and netcat-like output).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/datagram_text.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::GetHostInfoRequest;
using sockagent::v1::HostInfo;
using sockagent::v1::ReceiveRequest;
using sockagent::v1::ReceiveResponse;
using sockagent::v1::SendRequest;
using sockagent::v1::SendResponse;

// Largest payload of one Send: well under gRPC's default 4 MiB message and
// the agent's default max_send_bytes (1 MiB), small enough that a full send
// buffer drains soon enough for the retry.
constexpr size_t kMaxChunk = 256 * 1024;
// Backoff while the send buffer is full (RESOURCE_EXHAUSTED).
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(5);
constexpr absl::Duration kMaxBackoff = absl::Milliseconds(200);

// "0s", "500ms", "5s", "1m30s".
std::string FormatWait(absl::Duration d) {
  return d == absl::ZeroDuration() ? "0s" : absl::FormatDuration(d);
}

// The bytes `send` sends: an in-memory string (DATA or --hex) or a file
// descriptor (--file, stdin) read as it comes.
class ByteSource final {
 public:
  explicit ByteSource(std::string data) : data_(std::move(data)) {}
  // Takes ownership of `fd` unless it is stdin.
  explicit ByteSource(int fd) : fd_(fd) {}
  ~ByteSource() {
    if (fd_ > STDIN_FILENO) ::close(fd_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Bytes in all when known up front (a regular file, DATA), else 0.
  uint64_t size() const {
    if (fd_ < 0) return data_.size();
    struct stat st;
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
      return static_cast<uint64_t>(st.st_size);
    }
    return 0;
  }

  // The next at most `max` bytes into `chunk`; false at the end. A pipe
  // yields what each read() returns, so `producer | sockctl send ID` sends
  // as the producer writes.
  absl::StatusOr<bool> Next(size_t max, std::string* chunk) {
    if (fd_ < 0) {
      if (offset_ >= data_.size()) return false;
      *chunk = data_.substr(offset_, max);
      offset_ += chunk->size();
      return true;
    }
    chunk->resize(max);
    ssize_t n;
    do {
      n = ::read(fd_, chunk->data(), max);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      return absl::ErrnoToStatus(errno, "read");
    }
    chunk->resize(static_cast<size_t>(n));
    return n > 0;
  }

 private:
  std::string data_;
  size_t offset_ = 0;
  int fd_ = -1;
};

struct SendArgs {
  std::string id;
  std::string data;
  std::string hex;
  std::string file;
  bool verbose = false;
  bool progress = false;
  CLI::Option* data_opt = nullptr;
  CLI::Option* hex_opt = nullptr;
  CLI::Option* file_opt = nullptr;
};

absl::StatusOr<std::unique_ptr<ByteSource>> OpenSource(const SendArgs& args) {
  if (args.data_opt->count() > 0) {
    absl::StatusOr<std::string> data = UnescapeC(args.data);
    if (!data.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid DATA: ", data.status().message()));
    }
    return std::make_unique<ByteSource>(*std::move(data));
  }
  if (args.hex_opt->count() > 0) {
    absl::StatusOr<std::string> data = ParseHex(args.hex);
    if (!data.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --hex: ", data.status().message()));
    }
    return std::make_unique<ByteSource>(*std::move(data));
  }
  if (args.file_opt->count() > 0 && args.file != "-") {
    const int fd = ::open(args.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot open --file '", args.file, "': ", std::strerror(errno)));
    }
    return std::make_unique<ByteSource>(fd);
  }
  if (::isatty(STDIN_FILENO)) {
    std::fprintf(stderr,
                 "sockctl: sending what you type; end with Ctrl-D (or give "
                 "DATA, --hex or --file)\n");
  }
  return std::make_unique<ByteSource>(STDIN_FILENO);
}

// Sets `chunk` to kMaxChunk, or less if the agent's max_send_bytes is lower.
// On failure returns the exit code (already reported).
int FetchChunkSize(AgentClient& client, size_t* chunk) {
  *chunk = kMaxChunk;
  HostInfo info;
  auto ctx = client.NewContext();
  grpc::Status status =
      client.agent().GetHostInfo(ctx.get(), GetHostInfoRequest(), &info);
  if (!status.ok()) {
    // An agent that does not tell its limits may still take the bytes.
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
        status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      return kExitOk;
    }
    return client.Fail(status);
  }
  const uint64_t limit = info.limits().max_send_bytes();
  if (limit > 0 && limit < kMaxChunk) *chunk = static_cast<size_t>(limit);
  return kExitOk;
}

// One Send of `chunk`, retried with backoff while the send buffer is full,
// for up to --timeout from the first try.
int SendChunk(AgentClient& client, const std::string& id, std::string chunk,
              SendResponse* response) {
  SendRequest request;
  request.set_connection_id(id);
  request.set_data(std::move(chunk));
  const absl::Time give_up = absl::Now() + client.options().timeout;
  absl::Duration backoff = kFirstBackoff;
  for (;;) {
    auto ctx = client.NewContext();
    grpc::Status status = client.agent().Send(ctx.get(), request, response);
    if (status.ok()) return kExitOk;
    if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED ||
        absl::Now() + backoff > give_up) {
      return client.Fail(status);
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

int RunSend(AgentClient& client, const SendArgs& args) {
  absl::StatusOr<std::unique_ptr<ByteSource>> source = OpenSource(args);
  if (!source.ok()) return UsageError(source.status().message());
  size_t chunk_size = 0;
  if (int rc = FetchChunkSize(client, &chunk_size); rc != kExitOk) return rc;

  SendResponse response;
  uint64_t total = 0;
  std::string chunk;
  // A bar for files (or stdin) on a terminal; --progress asks for it
  // anywhere.
  ProgressBar bar(
      (*source)->size(),
      args.progress || (args.data_opt->count() == 0 &&
                        args.hex_opt->count() == 0 && ::isatty(STDERR_FILENO)));
  for (bool first = true;; first = false) {
    absl::StatusOr<bool> more = (*source)->Next(chunk_size, &chunk);
    if (!more.ok()) {
      std::fprintf(stderr, "sockctl: %s\n",
                   std::string(more.status().message()).c_str());
      return kExitFailure;
    }
    // Empty input still makes one (empty) Send: on UDP an empty datagram,
    // and an unknown id is reported either way.
    if (!*more && !first) break;
    if (int rc = SendChunk(client, args.id, std::move(chunk), &response);
        rc != kExitOk) {
      bar.Finish(total);
      if (total > 0) {
        std::fprintf(stderr, "sockctl: %llu bytes were sent before the error\n",
                     static_cast<unsigned long long>(total));
      }
      return rc;
    }
    total += response.bytes_accepted();
    bar.Update(total);
    if (!*more) break;
  }
  bar.Finish(total);
  if (client.options().output != OutputFormat::kTable) {
    return PrintStructured(std::cout, response, client.options().output)
               ? kExitOk
               : kExitFailure;
  }
  if (args.verbose) {
    std::fprintf(stderr, "sent %llu bytes to %s (%llu buffered)\n",
                 static_cast<unsigned long long>(total), args.id.c_str(),
                 static_cast<unsigned long long>(response.send_buffered()));
  }
  return kExitOk;
}

struct RecvArgs {
  std::string id;
  uint32_t max = 0;
  uint32_t max_datagrams = 0;
  std::string wait = "0s";
  uint32_t exactly = 0;
  std::string until;
  bool hex = false;
  bool raw = false;
  bool verbose = false;
  CLI::Option* until_opt = nullptr;
};

// Writes received bytes: raw when stdout is not a terminal (pipes, files
// get exactly the bytes) or with --raw; on a terminal text when it is
// printable, else a hex dump; always a hex dump with --hex.
void WriteData(absl::string_view data, bool hex, bool tty) {
  if (hex) {
    std::cout << HexDump(data);
  } else if (!tty) {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
  } else if (IsPrintableText(data)) {
    std::cout << data;
    // Keep the prompt off the last line of the text.
    if (!data.empty() && data.back() != '\n') std::cout << "\n";
  } else {
    std::cout << HexDump(data);
  }
}

// A line on stderr, after whatever stdout holds so that they interleave in
// order on a terminal.
void Note(const std::string& line) {
  std::cout.flush();
  std::fprintf(stderr, "%s\n", line.c_str());
}

int RunRecv(AgentClient& client, const RecvArgs& args) {
  absl::StatusOr<absl::Duration> wait = ParseDurationFlag("--wait", args.wait);
  if (!wait.ok()) return UsageError(wait.status().message());
  ReceiveRequest request;
  request.set_connection_id(args.id);
  request.set_max_bytes(args.max);
  request.set_max_datagrams(args.max_datagrams);
  ToProto(*wait, request.mutable_wait());
  if (args.exactly > 0) {
    request.set_min_bytes(args.exactly);
    request.set_max_bytes(args.exactly);
  }
  const bool until = args.until_opt->count() > 0;
  if (until) {
    absl::StatusOr<std::string> delimiter = UnescapeC(args.until);
    if (!delimiter.ok()) {
      return UsageError(
          absl::StrCat("invalid --until: ", delimiter.status().message()));
    }
    if (delimiter->empty()) return UsageError("--until needs a delimiter");
    request.set_delimiter(*std::move(delimiter));
  }

  ReceiveResponse response;
  // The agent answers when the wait ends: the call must outlive it.
  auto ctx = client.NewContext(*wait + kWaitSlack);
  grpc::Status status = client.agent().Receive(ctx.get(), request, &response);
  if (!status.ok()) return client.Fail(status);

  if (client.options().output != OutputFormat::kTable) {
    if (!PrintStructured(std::cout, response, client.options().output)) {
      return kExitFailure;
    }
  } else {
    const bool tty = ::isatty(STDOUT_FILENO) == 1 && !args.raw;
    for (const auto& datagram : response.datagrams()) {
      if (args.verbose)
        Note(absl::StrCat("from ", FormatAddress(datagram.peer())));
      // One line per datagram (datagram_text.h), on a terminal and in a
      // pipe alike, so that boundaries survive; --raw and --hex as asked.
      if (args.hex || args.raw) {
        WriteData(datagram.data(), args.hex, tty);
      } else {
        std::cout << DatagramLine(datagram.data());
      }
    }
    if (!response.data().empty()) WriteData(response.data(), args.hex, tty);
    std::cout.flush();
  }

  // Whether the condition was met decides the exit code.
  const std::string& data = response.data();
  const bool conditional = args.exactly > 0 || until;
  if (data.empty() && response.datagrams().empty() &&
      !response.end_of_stream()) {
    // By default "nothing yet" is an answer, like a non-blocking read; an
    // asked-for condition that was not met is a failure.
    if (conditional || args.verbose) {
      Note(absl::StrCat("sockctl: no data within ", FormatWait(*wait)));
    }
    return conditional ? kExitFailure : kExitOk;
  }
  if (response.datagrams_size() > 0) return kExitOk;
  const bool short_of_exactly = args.exactly > 0 && data.size() < args.exactly;
  const bool no_delimiter = until && !absl::EndsWith(data, request.delimiter());
  if (response.end_of_stream()) {
    if (short_of_exactly || no_delimiter) {
      Note(
          absl::StrCat("sockctl: end of stream after ", data.size(), " bytes"));
      return kExitFailure;
    }
    if (args.verbose) Note("sockctl: end of stream");
    return kExitOk;
  }
  if (short_of_exactly) {  // Only from an agent that ignores min_bytes.
    Note(absl::StrCat("sockctl: only ", data.size(), " of ", args.exactly,
                      " bytes within ", FormatWait(*wait)));
    return kExitFailure;
  }
  if (no_delimiter) {  // max_bytes arrived first, or the peer reset.
    Note(absl::StrCat("sockctl: delimiter not found in the ", data.size(),
                      " bytes received"));
    return kExitFailure;
  }
  if (args.verbose) {
    Note(absl::StrCat("received ", data.size(), " bytes (",
                      response.recv_buffered(), " still buffered)"));
  }
  return kExitOk;
}

void AddSend(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<SendArgs>();
  CLI::App* send = app.add_subcommand(
      "send",
      "Send bytes on a connection (Send): DATA with C escapes, --hex, --file "
      "or stdin; on UDP each Send is one datagram");
  send->footer(
      "Large input goes in chunks of at most 256KiB (or the agent's max "
      "send size),\nin order; while the send buffer is full a chunk is "
      "retried for up to --timeout.\n\n"
      "Examples:\n"
      "  sockctl send conn-1 'GET / HTTP/1.0\\r\\n\\r\\n'\n"
      "  sockctl send conn-1 --hex '16 03 01 00 00'\n"
      "  sockctl send conn-1 --file request.bin\n"
      "  printf 'ping\\n' | sockctl send conn-1");
  send->add_option("ID", args->id, "Connection id, e.g. conn-1")->required();
  args->data_opt = send->add_option(
      "DATA", args->data,
      "Bytes to send; escapes: \\r \\n \\t \\0 \\\\ \\xHH \\NNN (octal)");
  args->hex_opt =
      send->add_option("--hex", args->hex, "Bytes as hex, spaces allowed")
          ->type_name("HEX");
  args->file_opt =
      send->add_option("--file", args->file, "Bytes of a file ('-': stdin)")
          ->type_name("FILE");
  args->data_opt->excludes(args->hex_opt)->excludes(args->file_opt);
  args->hex_opt->excludes(args->file_opt);
  send->add_flag("-v,--verbose", args->verbose,
                 "Say on stderr how many bytes were sent");
  send->add_flag("--progress", args->progress,
                 "Show a progress bar with the rate on stderr (the default "
                 "for --file and stdin when stderr is a terminal)");
  commands.push_back(
      {send, [args](AgentClient& client) { return RunSend(client, *args); },
       nullptr, kStructuredOutputs});
}

void AddRecv(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<RecvArgs>();
  CLI::App* recv = app.add_subcommand(
      "recv",
      "Receive what a connection has buffered (Receive), waiting up to "
      "--wait; raw bytes to a pipe, text or a hex dump to a terminal; UDP: "
      "one escaped line per datagram");
  recv->footer(
      "Exit status: 0 on success, even when nothing came within --wait "
      "(then\nnothing is printed); 1 when --exactly N / --until DELIM was not "
      "met:\nnothing within --wait, or the stream ended short of it.\n\n"
      "UDP datagrams are printed one per line (also to a pipe), each byte "
      "as\nitself if printable ASCII, else escaped: \\\\ \\n \\r \\t "
      "\\xNN (what\n`sockctl send DATA` reads back). --raw writes the bytes "
      "as they are\n(datagrams then run together).\n\n"
      "Examples:\n"
      "  sockctl recv conn-1 --wait 5s\n"
      "  sockctl recv conn-1 --exactly 5 --wait 5s\n"
      "  sockctl recv conn-1 --until '\\r\\n' --wait 5s\n"
      "  sockctl recv conn-1 --hex");
  recv->add_option("ID", args->id, "Connection id, e.g. conn-1")->required();
  CLI::Option* max =
      recv->add_option("--max", args->max,
                       "At most N bytes (default: the agent's, 64KiB); UDP: "
                       "of datagrams, but at least one whole")
          ->type_name("N")
          ->check(CLI::PositiveNumber);
  recv->add_option("--max-datagrams", args->max_datagrams,
                   "UDP: at most N datagrams")
      ->type_name("N")
      ->check(CLI::PositiveNumber);
  recv->add_option("--wait", args->wait,
                   "Wait up to D for data (0: take what is buffered now)")
      ->type_name("D")
      ->capture_default_str();
  CLI::Option* exactly =
      recv->add_option("--exactly", args->exactly,
                       "Exactly N bytes: nothing is taken unless N arrive "
                       "(or the stream ends)")
          ->type_name("N")
          ->check(CLI::PositiveNumber);
  args->until_opt =
      recv->add_option("--until", args->until,
                       "Up to and including DELIM (escapes allowed, e.g. "
                       "'\\r\\n'); nothing is taken unless it arrives")
          ->type_name("DELIM");
  exactly->excludes(max)->excludes(args->until_opt);
  CLI::Option* hex =
      recv->add_flag("--hex", args->hex, "Hex dump (like hexdump -C)");
  recv->add_flag("--raw", args->raw,
                 "The bytes as they are, also on a terminal and for UDP "
                 "(datagrams run together)")
      ->excludes(hex);
  recv->add_flag("-v,--verbose", args->verbose,
                 "On stderr: each datagram's sender, end of stream, counts");
  commands.push_back(
      {recv, [args](AgentClient& client) { return RunRecv(client, *args); },
       nullptr, kStructuredOutputs});
}

}  // namespace

void AddDataCommands(CLI::App& app, Commands& commands) {
  AddSend(app, commands);
  AddRecv(app, commands);
}

}  // namespace sockctl
