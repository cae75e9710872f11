#include "agent/perf.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/address.h"
#include "agent/net_error.h"
#include "agent/perf_wire.h"
#include "agent/quote.h"

namespace sockagent {
namespace {

using Tcp = asio::ip::tcp;
using Udp = asio::ip::udp;

// What one TCP write offers the kernel (iperf3's default block, too).
constexpr size_t kTcpChunk = 128 * 1024;
// Writes (TCP) and datagrams (UDP) per turn on the loop before other work
// gets its turn.
constexpr int kTcpWritesPerTurn = 16;
constexpr int kUdpBurst = 256;
// The shortest wait between two UDP bursts.
constexpr absl::Duration kUdpTick = absl::Milliseconds(1);
// The largest UDP payload (IPv4; IPv6 takes 8 bytes more, not used here).
constexpr uint32_t kMaxDatagramBytes = 65507;

std::error_code Errno(int e) {
  return std::error_code(e, std::system_category());
}

// The one buffer every TCP stream writes; its contents do not matter.
const char* TcpBuffer() {
  static const char* const kBuffer = [] {
    char* b = new char[kTcpChunk];
    for (size_t i = 0; i < kTcpChunk; ++i) b[i] = static_cast<char>(i * 131);
    return b;
  }();
  return kBuffer;
}

absl::Status CheckSpec(const PerfSpec& spec, const PerfOptions& o) {
  if (spec.transport != Transport::kTcp && spec.transport != Transport::kUdp) {
    return absl::InvalidArgumentError(
        "transport: perf runs over TCP or UDP only");
  }
  const Endpoint& e = spec.target;
  if (e.host.empty() || e.host.size() > kMaxResolveNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("target.host: a host of 1 to ", kMaxResolveNameBytes,
                     " bytes is needed"));
  }
  if (!e.unix_path.empty()) {
    return absl::InvalidArgumentError(
        "target.unix_path: perf runs over TCP or UDP only");
  }
  uint32_t port = 0;
  if (e.port.empty() || e.port.size() > kMaxResolveNameBytes ||
      (absl::SimpleAtoi(e.port, &port) && (port == 0 || port > 65535))) {
    return absl::InvalidArgumentError(
        absl::StrCat("target.port: ", QuoteInput(e.port),
                     " is not a port (1-65535) or a service name"));
  }
  if (spec.duration < absl::ZeroDuration() || spec.duration > o.max_duration) {
    return absl::InvalidArgumentError(absl::StrCat(
        "duration: ", absl::FormatDuration(spec.duration),
        " is not between 0 and ", absl::FormatDuration(o.max_duration)));
  }
  if (spec.bytes > o.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bytes: ", spec.bytes, "; at most ", o.max_bytes, " per call"));
  }
  if (spec.parallel > o.max_parallel) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel: ", spec.parallel, " streams; at most ",
                     o.max_parallel, " per call"));
  }
  if (spec.transport == Transport::kTcp) {
    if (spec.udp_rate_bps != 0) {
      return absl::InvalidArgumentError(
          "udp_rate_bits_per_sec: only for UDP (TCP runs at full speed)");
    }
    if (spec.udp_datagram_bytes != 0) {
      return absl::InvalidArgumentError("udp_datagram_bytes: only for UDP");
    }
    return absl::OkStatus();
  }
  if (spec.udp_rate_bps > o.max_udp_rate_bps) {
    return absl::InvalidArgumentError(
        absl::StrCat("udp_rate_bits_per_sec: ", spec.udp_rate_bps, "; at most ",
                     o.max_udp_rate_bps));
  }
  if (spec.udp_datagram_bytes != 0 &&
      (spec.udp_datagram_bytes < kPerfHeaderBytes ||
       spec.udp_datagram_bytes > kMaxDatagramBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "udp_datagram_bytes: ", spec.udp_datagram_bytes, " is not between ",
        kPerfHeaderBytes, " (the header) and ", kMaxDatagramBytes));
  }
  return absl::OkStatus();
}

std::string AddressText(const asio::ip::address& ip, uint16_t port) {
  return ToSocketAddress(ip, port).ToString();
}

PerfTcpInfo ReadTcpInfo(int fd) {
  PerfTcpInfo out;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return out;
  out.valid = true;
  out.rtt = absl::Microseconds(info.tcpi_rtt);
  out.rtt_var = absl::Microseconds(info.tcpi_rttvar);
  out.retransmits = info.tcpi_total_retrans;
  out.snd_cwnd = info.tcpi_snd_cwnd;
  out.snd_mss = info.tcpi_snd_mss;
  return out;
}

}  // namespace

struct PerfRunner::Alive {
  absl::Mutex mu;
  asio::io_context* io ABSL_GUARDED_BY(mu) = nullptr;
};

// One stream: a TCP connection or a connected UDP socket. Loop thread only.
struct PerfStreamState {
  explicit PerfStreamState(asio::io_context& io) : timer(io) {}
  std::optional<Tcp::socket> tcp;
  std::optional<Udp::socket> udp;
  asio::steady_timer timer;  // UDP pacing; TCP drain wait.
  PerfStreamReport report;
  bool connected = false;
  bool writing_done = false;
  bool ended = false;
  // UDP.
  std::string datagram;  // Header + filler, rewritten per datagram.
  uint64_t sequence = 0;
  double datagrams_per_second = 0;
};

struct PerfRunner::Call {
  explicit Call(asio::io_context& io) : timer(io) {}
  uint64_t token = 0;
  PerfSpec spec;
  Done<absl::StatusOr<PerfReport>> done;
  std::vector<std::unique_ptr<PerfStreamState>> streams;
  asio::steady_timer timer;  // Connect timeout, then the end of writing.
  std::string remote;        // "127.0.0.1:5201", for messages.
  absl::Time started;        // Sending began.
  absl::Duration run_for;    // Writing lasts at most this.
  uint64_t bytes_left = 0;   // With spec.bytes.
  size_t connected = 0;
  size_t ended_streams = 0;
  bool sending = false;
  bool stopping = false;  // Time is up: streams stop writing.
  bool ended = false;

  // A call dropped unrun (the loop stopped before it began) still answers.
  ~Call() {
    if (!ended && done) done(absl::UnavailableError("agent shutting down"));
  }
};

PerfRunner::PerfRunner(asio::io_context& io, PerfOptions options)
    : io_(io), options_(options), alive_(std::make_shared<Alive>()) {
  absl::MutexLock lock(&alive_->mu);
  alive_->io = &io_;
}

PerfRunner::~PerfRunner() { Shutdown(); }

uint64_t PerfRunner::Start(PerfSpec spec,
                           Done<absl::StatusOr<PerfReport>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  if (absl::Status bad = CheckSpec(spec, options_); !bad.ok()) {
    done(bad);
    return token;
  }
  if (calls_.fetch_add(1) >= options_.max_calls) {
    calls_.fetch_sub(1);
    done(absl::ResourceExhaustedError(absl::StrCat(
        "perf: ", options_.max_calls,
        " Perf calls are running (the agent's bound); retry after one "
        "ends")));
    return token;
  }
  if (spec.parallel == 0) spec.parallel = 1;
  if (spec.transport == Transport::kUdp) {
    if (spec.udp_rate_bps == 0) spec.udp_rate_bps = kPerfDefaultUdpRateBps;
    if (spec.udp_datagram_bytes == 0) {
      spec.udp_datagram_bytes = kPerfDefaultDatagramBytes;
    }
  }
  if (spec.run_id == 0) {
    std::random_device random;
    spec.run_id = (uint64_t{random()} << 32) | random();
    if (spec.run_id == 0) spec.run_id = 1;
  }
  auto call = std::make_shared<Call>(io_);
  call->token = token;
  call->run_for = spec.duration > absl::ZeroDuration() ? spec.duration
                  : spec.bytes > 0                     ? options_.max_duration
                                                       : kPerfDefaultDuration;
  call->bytes_left = spec.bytes;
  call->spec = std::move(spec);
  call->done = std::move(done);
  asio::post(io_, [this, call]() mutable { Begin(std::move(call)); });
  return token;
}

void PerfRunner::Begin(std::shared_ptr<Call> call) {
  running_.emplace(call->token, call);
  const Endpoint& e = call->spec.target;
  call->remote = e.host.find(':') != std::string::npos
                     ? absl::StrCat("[", e.host, "]:", e.port)
                     : absl::StrCat(e.host, ":", e.port);
  uint32_t port = 0;
  if (std::optional<asio::ip::address> ip = ParseIpLiteral(e.host);
      ip.has_value() && absl::SimpleAtoi(e.port, &port)) {
    return Connect(call, *ip, static_cast<uint16_t>(port));
  }
  if (options_.resolver == nullptr) {
    return Finish(call->token, absl::NotFoundError(absl::StrCat(
                                   "resolve ", call->remote,
                                   ": name lookups are not available")));
  }
  ResolveQuery query{.host = e.host, .service = e.port};
  query.socket_type = call->spec.transport == Transport::kUdp
                          ? SocketType::kDgram
                          : SocketType::kStream;
  std::weak_ptr<Call> weak = call;
  auto alive = alive_;
  const absl::Time until =
      std::min(call->spec.deadline, absl::Now() + options_.connect_timeout);
  const bool queued = options_.resolver->SubmitResolve(
      query, until,
      [this, weak,
       alive](absl::StatusOr<std::vector<AddressEntry>> result) mutable {
        absl::MutexLock lock(&alive->mu);
        if (alive->io == nullptr) return;
        asio::post(*alive->io,
                   [this, weak, result = std::move(result)]() mutable {
                     auto call = weak.lock();
                     if (call != nullptr && !call->ended) {
                       Resolved(call, std::move(result));
                     }
                   });
      });
  if (!queued) {
    Finish(call->token,
           absl::ResourceExhaustedError(absl::StrCat(
               "resolve ", call->remote, ": the resolver's queue is full")));
  }
}

void PerfRunner::Resolved(const std::shared_ptr<Call>& call,
                          absl::StatusOr<std::vector<AddressEntry>> result) {
  if (!result.ok()) return Finish(call->token, result.status());
  for (const AddressEntry& entry : *result) {
    if (std::optional<asio::ip::address> ip = ParseIpLiteral(entry.address)) {
      return Connect(call, *ip, entry.port);
    }
  }
  Finish(call->token, absl::NotFoundError(absl::StrCat("resolve ", call->remote,
                                                       ": no address")));
}

void PerfRunner::Connect(const std::shared_ptr<Call>& call,
                         const asio::ip::address& ip, uint16_t port) {
  call->remote = AddressText(ip, port);
  if (options_.policy != nullptr) {
    if (absl::Status s =
            options_.policy->CheckDestination(ip.to_string(), port);
        !s.ok()) {
      return Finish(call->token,
                    absl::PermissionDeniedError(absl::StrCat(
                        "perf to ", call->remote, ": ", s.message())));
    }
  }
  const absl::Time until =
      std::min(call->spec.deadline, absl::Now() + options_.connect_timeout);
  call->timer.expires_after(absl::ToChronoNanoseconds(
      std::max(until - absl::Now(), absl::ZeroDuration())));
  call->timer.async_wait([this, call](const std::error_code& ec) {
    if (ec || call->ended || call->sending) return;
    Finish(call->token, absl::DeadlineExceededError(absl::StrCat(
                            "connect ", call->remote, ": no answer within ",
                            absl::FormatDuration(options_.connect_timeout))));
  });
  for (uint32_t i = 0; i < call->spec.parallel; ++i) {
    auto& s =
        call->streams.emplace_back(std::make_unique<PerfStreamState>(io_));
    s->report.remote = ToSocketAddress(ip, port);
  }
  for (size_t i = 0; i < call->streams.size() && !call->ended; ++i) {
    PerfStreamState& s = *call->streams[i];
    std::error_code ec;
    if (call->spec.transport == Transport::kUdp) {
      s.udp.emplace(io_);
      s.udp->open(ip.is_v6() ? Udp::v6() : Udp::v4(), ec);
      // connect(2) on UDP fixes the peer (and lets ICMP errors back).
      if (!ec) s.udp->connect(Udp::endpoint(ip, port), ec);
      if (!ec) s.udp->non_blocking(true, ec);
      Connected(call, i, ec);
      continue;
    }
    s.tcp.emplace(io_);
    s.tcp->async_connect(Tcp::endpoint(ip, port),
                         [this, call, i](const std::error_code& ec) {
                           if (call->ended) return;
                           Connected(call, i, ec);
                         });
  }
}

void PerfRunner::Connected(const std::shared_ptr<Call>& call, size_t i,
                           const std::error_code& connect_ec) {
  PerfStreamState& s = *call->streams[i];
  std::error_code ec = connect_ec;
  if (!ec && s.tcp) s.tcp->non_blocking(true, ec);
  if (ec) {
    return Finish(call->token,
                  ErrorStatus(absl::StrCat("connect ", call->remote), ec));
  }
  std::error_code ignored;
  if (s.tcp) {
    const Tcp::endpoint local = s.tcp->local_endpoint(ignored);
    s.report.local = ToSocketAddress(local.address(), local.port());
  } else {
    const Udp::endpoint local = s.udp->local_endpoint(ignored);
    s.report.local = ToSocketAddress(local.address(), local.port());
  }
  s.connected = true;
  if (++call->connected == call->streams.size()) StartSending(call);
}

void PerfRunner::StartSending(const std::shared_ptr<Call>& call) {
  call->sending = true;
  call->started = absl::Now();
  call->timer.cancel();
  const absl::Time end =
      std::min(call->started + call->run_for, call->spec.deadline);
  call->timer.expires_after(absl::ToChronoNanoseconds(
      std::max(end - call->started, absl::ZeroDuration())));
  call->timer.async_wait([this, call](const std::error_code& ec) {
    if (ec || call->ended) return;
    TimeUp(call);
  });
  const double per_stream_bps = static_cast<double>(call->spec.udp_rate_bps) /
                                static_cast<double>(call->streams.size());
  for (size_t i = 0; i < call->streams.size(); ++i) {
    PerfStreamState& s = *call->streams[i];
    if (s.udp) {
      s.datagram.assign(call->spec.udp_datagram_bytes, '\0');
      for (size_t k = kPerfHeaderBytes; k < s.datagram.size(); ++k) {
        s.datagram[k] = static_cast<char>(k * 131);
      }
      s.datagrams_per_second =
          per_stream_bps / (8.0 * call->spec.udp_datagram_bytes);
    }
  }
  // Each stream starts in its own turn, so one slow stream cannot delay
  // the others' first writes by a whole turn.
  for (size_t i = 0; i < call->streams.size(); ++i) {
    asio::post(io_, [this, call, i] {
      if (call->ended) return;
      if (call->streams[i]->tcp) {
        WriteTcp(call, i);
      } else {
        SendUdp(call, i);
      }
    });
  }
}

void PerfRunner::TimeUp(const std::shared_ptr<Call>& call) {
  call->stopping = true;
  for (size_t i = 0; i < call->streams.size(); ++i) {
    PerfStreamState& s = *call->streams[i];
    if (s.writing_done) continue;
    // A stream waiting for room (TCP) or its next burst (UDP) stops now;
    // one whose turn is posted stops when the turn comes.
    std::error_code ignored;
    if (s.tcp) s.tcp->cancel(ignored);
    if (s.udp) {
      s.udp->cancel(ignored);
      s.timer.cancel();
    }
  }
}

void PerfRunner::WriteTcp(const std::shared_ptr<Call>& call, size_t i) {
  PerfStreamState& s = *call->streams[i];
  if (s.writing_done) return;
  const int fd = s.tcp->native_handle();
  for (int turn = 0; turn < kTcpWritesPerTurn; ++turn) {
    size_t want = kTcpChunk;
    if (call->spec.bytes > 0) want = std::min<uint64_t>(want, call->bytes_left);
    if (call->stopping || want == 0) return EndTcp(call, i);
    const ssize_t n =
        ::send(fd, TcpBuffer(), want, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      s.report.bytes += static_cast<uint64_t>(n);
      if (call->spec.bytes > 0) call->bytes_left -= static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      s.tcp->async_wait(Tcp::socket::wait_write,
                        [this, call, i](const std::error_code& ec) {
                          if (call->ended) return;
                          if (ec && ec != asio::error::operation_aborted) {
                            call->streams[i]->report.error =
                                absl::StrCat("wait to write: ", ErrorText(ec));
                          }
                          WriteTcp(call, i);
                        });
      return;
    }
    s.report.error = absl::StrCat("send: ", ErrorText(Errno(errno)));
    return EndTcp(call, i);
  }
  asio::post(io_, [this, call, i] {
    if (!call->ended) WriteTcp(call, i);
  });
}

void PerfRunner::EndTcp(const std::shared_ptr<Call>& call, size_t i) {
  PerfStreamState& s = *call->streams[i];
  if (s.writing_done) return;
  s.writing_done = true;
  s.report.duration = absl::Now() - call->started;
  const int fd = s.tcp->native_handle();
  s.report.tcp = ReadTcpInfo(fd);
  if (!s.report.error.empty()) return EndStream(call, i);
  // FIN after the last byte; the receiver closes once it read them all.
  std::error_code ec;
  s.tcp->shutdown(Tcp::socket::shutdown_send, ec);
  if (ec) {
    s.report.error = absl::StrCat("shutdown: ", ErrorText(ec));
    return EndStream(call, i);
  }
  const absl::Time until =
      std::min(absl::Now() + options_.drain_wait, call->spec.deadline);
  s.timer.expires_after(absl::ToChronoNanoseconds(
      std::max(until - absl::Now(), absl::ZeroDuration())));
  s.timer.async_wait([this, call, i](const std::error_code& e) {
    if (e || call->ended) return;
    EndStream(call, i);  // Not drained in time.
  });
  Drain(call, i);
}

void PerfRunner::Drain(const std::shared_ptr<Call>& call, size_t i) {
  PerfStreamState& s = *call->streams[i];
  char sink[4096];
  while (true) {
    const ssize_t n =
        ::recv(s.tcp->native_handle(), sink, sizeof sink, MSG_DONTWAIT);
    if (n > 0) continue;  // A discard server sends nothing; ignore it.
    if (n == 0) {
      s.report.drained = true;
      return EndStream(call, i);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    s.report.error =
        absl::StrCat("waiting for the receiver: ", ErrorText(Errno(errno)));
    return EndStream(call, i);
  }
  s.tcp->async_wait(Tcp::socket::wait_read,
                    [this, call, i](const std::error_code& ec) {
                      if (call->ended || call->streams[i]->ended) return;
                      if (ec) return EndStream(call, i);
                      Drain(call, i);
                    });
}

void PerfRunner::SendUdp(const std::shared_ptr<Call>& call, size_t i) {
  PerfStreamState& s = *call->streams[i];
  if (s.writing_done) return;
  auto end = [&] {
    s.writing_done = true;
    s.report.duration = absl::Now() - call->started;
    EndStream(call, i);
  };
  if (call->stopping) return end();
  const size_t size = s.datagram.size();
  const int fd = s.udp->native_handle();
  const absl::Time now = absl::Now();
  // Datagrams due since the start at this stream's rate (the first at once).
  const double elapsed = absl::ToDoubleSeconds(now - call->started);
  const uint64_t due =
      static_cast<uint64_t>(std::floor(elapsed * s.datagrams_per_second)) + 1;
  for (int burst = 0; burst < kUdpBurst && s.sequence < due; ++burst) {
    size_t n = size;
    if (call->spec.bytes > 0) {
      if (call->bytes_left < kPerfHeaderBytes) return end();
      n = std::min<uint64_t>(n, call->bytes_left);
    }
    PerfHeader h{.run_id = call->spec.run_id,
                 .sequence = s.sequence,
                 .sent_ns = absl::ToUnixNanos(absl::Now())};
    WritePerfHeader(h, s.datagram.data());
    const ssize_t sent = ::send(fd, s.datagram.data(), n, MSG_DONTWAIT);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      s.udp->async_wait(Udp::socket::wait_write,
                        [this, call, i](const std::error_code&) {
                          if (!call->ended) SendUdp(call, i);
                        });
      return;
    }
    ++s.sequence;  // A datagram that failed counts as lost on the far side.
    if (call->spec.bytes > 0) call->bytes_left -= n;
    if (sent < 0) {
      // ECONNREFUSED: an ICMP error for an earlier datagram; ENOBUFS: a
      // full queue. Neither ends the run.
      ++s.report.send_errors;
      if (s.report.error.empty()) {
        s.report.error = absl::StrCat("send: ", ErrorText(Errno(errno)));
      }
      continue;
    }
    ++s.report.datagrams;
    s.report.bytes += static_cast<uint64_t>(sent);
  }
  if (s.sequence < due) {
    // A full burst: the rest of what is due goes in the next turn.
    asio::post(io_, [this, call, i] {
      if (!call->ended) SendUdp(call, i);
    });
    return;
  }
  const absl::Time next =
      call->started +
      absl::Seconds(static_cast<double>(s.sequence) / s.datagrams_per_second);
  const absl::Duration wait = std::max(next - absl::Now(), kUdpTick);
  s.timer.expires_after(absl::ToChronoNanoseconds(wait));
  s.timer.async_wait([this, call, i](const std::error_code&) {
    if (!call->ended) SendUdp(call, i);
  });
}

void PerfRunner::EndStream(const std::shared_ptr<Call>& call, size_t i) {
  PerfStreamState& s = *call->streams[i];
  if (s.ended) return;
  s.ended = true;
  s.timer.cancel();
  std::error_code ignored;
  if (s.tcp) {
    // Retransmits during the drain count too.
    const PerfTcpInfo last = ReadTcpInfo(s.tcp->native_handle());
    if (last.valid) s.report.tcp.retransmits = last.retransmits;
    s.tcp->close(ignored);
  }
  if (s.udp) s.udp->close(ignored);
  if (++call->ended_streams == call->streams.size()) {
    Finish(call->token, absl::OkStatus());
  }
}

void PerfRunner::Finish(uint64_t token, absl::Status status) {
  auto it = running_.find(token);
  if (it == running_.end()) return;
  std::shared_ptr<Call> call = std::move(it->second);
  running_.erase(it);
  call->ended = true;
  call->timer.cancel();
  PerfReport report;
  report.run_id = call->spec.run_id;
  for (auto& s : call->streams) {
    s->timer.cancel();
    std::error_code ignored;
    if (s->tcp) s->tcp->close(ignored);
    if (s->udp) s->udp->close(ignored);
    report.bytes += s->report.bytes;
    report.datagrams += s->report.datagrams;
    report.duration = std::max(report.duration, s->report.duration);
    report.streams.push_back(std::move(s->report));
  }
  calls_.fetch_sub(1);
  if (status.ok()) {
    call->done(std::move(report));
  } else {
    call->done(std::move(status));
  }
}

void PerfRunner::Cancel(uint64_t token) {
  asio::post(io_, [this, token] {
    Finish(token, absl::CancelledError("perf: the call was cancelled"));
  });
}

void PerfRunner::Shutdown() {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->io = nullptr;
  }
  std::vector<uint64_t> tokens;
  for (const auto& [token, call] : running_) tokens.push_back(token);
  for (uint64_t token : tokens) {
    Finish(token, absl::UnavailableError("agent shutting down"));
  }
}

}  // namespace sockagent
