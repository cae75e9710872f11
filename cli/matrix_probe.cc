// The probes of `sockctl matrix`: see matrix_probe.h.
#include "cli/matrix_probe.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::ProbeOutcome;
using sockagent::v1::ProbeRequest;
using sockagent::v1::ProbeResponse;

// How often the waiting thread looks at the interrupt flag and the retries
// that are due, at most.
constexpr absl::Duration kTick = absl::Milliseconds(20);
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Milliseconds(1600);
// A call without a cut may take its probes' time plus this.
constexpr absl::Duration kCallSlack = absl::Seconds(2);

// One Probe call: some of one source's cells.
struct Call {
  size_t src = 0;
  std::vector<size_t> cells;  // Indices into the round's cells.
  ProbeRequest request;
  ProbeResponse response;
  std::unique_ptr<grpc::ClientContext> ctx;
  grpc::Status status;
  int attempts = 0;
  absl::Time retry_at = absl::InfinitePast();
  bool running = false;
};

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

absl::Duration Backoff(int attempts) {
  absl::Duration d = kFirstBackoff;
  for (int i = 1; i < attempts && d < kMaxBackoff; ++i) d *= 2;
  return std::min(d, kMaxBackoff);
}

class Round {
 public:
  Round(const ProbeRun& run, const Fleet& fleet, const TargetOf& target_of,
        std::vector<MatrixCell>& cells, absl::Time cut,
        std::vector<std::atomic<bool>>& reached)
      : run_(run),
        fleet_(fleet),
        target_of_(target_of),
        cells_(cells),
        cut_(cut),
        reached_(reached) {}

  void Run(const std::vector<size_t>& which) {
    Plan(which);
    std::vector<Call*> starting;
    mu_.Lock();
    for (auto& call : calls_) starting.push_back(call.get());
    for (;;) {
      for (Call* call : starting) call->running = true;
      // gRPC may answer a call on another thread at once: no lock held
      // while starting them.
      mu_.Unlock();
      for (Call* call : starting) Start(*call);
      starting.clear();
      mu_.Lock();
      const absl::Time now = absl::Now();
      if (run_.interrupt->raised() && !cancelled_) {
        cancelled_ = true;
        for (auto& call : calls_) {
          if (call->running) call->ctx->TryCancel();
        }
      }
      size_t busy = 0;
      for (auto& call : calls_) {
        if (call->running) {
          ++busy;
        } else if (call->retry_at == absl::InfinitePast()) {
          continue;  // Done.
        } else if (cancelled_) {
          call->retry_at = absl::InfinitePast();
          Give(*call, "interrupted");
        } else if (call->retry_at <= now) {
          call->retry_at = absl::InfinitePast();
          starting.push_back(call.get());
          ++busy;
        } else {
          ++busy;  // Waiting for its retry.
        }
      }
      if (busy == 0) break;
      if (starting.empty()) {
        mu_.AwaitWithTimeout(absl::Condition(&answered_), kTick);
        answered_ = false;
      }
    }
    mu_.Unlock();
  }

 private:
  // Groups the cells into calls (one per source, split at the agent's
  // bound) and fills in the cells that cannot be probed.
  void Plan(const std::vector<size_t>& which) {
    std::vector<std::vector<size_t>> by_source(fleet_.size());
    for (size_t i : which) {
      MatrixCell& cell = cells_[i];
      ++cell.attempts;
      cell.rtt = absl::ZeroDuration();
      cell.result = ProbeResult::kError;
      const EchoServer& target = target_of_(cell);
      if (!target.started) {
        cell.message = target.error;
        continue;
      }
      by_source[cell.src].push_back(i);
    }
    absl::MutexLock lock(&mu_);
    for (size_t src = 0; src < by_source.size(); ++src) {
      const std::vector<size_t>& mine = by_source[src];
      for (size_t at = 0; at < mine.size(); at += kMaxTargetsPerCall) {
        auto call = std::make_unique<Call>();
        call->src = src;
        call->cells.assign(
            mine.begin() + at,
            mine.begin() + std::min(mine.size(), at + kMaxTargetsPerCall));
        Fill(*call);
        calls_.push_back(std::move(call));
      }
    }
  }

  void Fill(Call& call) {
    ProbeRequest& request = call.request;
    ToProto(run_.per_probe, request.mutable_timeout());
    request.set_concurrency(run_.concurrency);
    for (size_t i : call.cells) {
      const MatrixCell& cell = cells_[i];
      sockagent::v1::ProbeTarget* t = request.add_targets();
      t->set_transport(ToApi(cell.transport));
      t->mutable_endpoint()->set_host(run_.dial_hosts[cell.dst]);
      t->mutable_endpoint()->set_port(target_of_(cell).port);
      t->set_payload(ProbePayload(run_.run, run_.agents[cell.src],
                                  run_.agents[cell.dst], cell.transport,
                                  cell.attempts));
      t->set_expect_echo(true);
      if (!run_.tls_ca_pem.empty() && cell.transport == ProbeTransport::kTcp) {
        // No server_name: the dialled host is the name verified, as an IP
        // address or a DNS name, like the SAN the run's CA wrote.
        sockagent::v1::TlsClientOptions* tls = t->mutable_tls();
        tls->set_ca_pem(run_.tls_ca_pem);
        if (cell.src < run_.client_certs.size()) {
          tls->set_certificate_chain_pem(
              run_.client_certs[cell.src].certificate_pem);
          tls->set_private_key_pem(run_.client_certs[cell.src].private_key_pem);
        }
      }
    }
  }

  // The call's deadline: its probes' time (in waves of `concurrency`) and
  // some slack, but never past the cut. The agent ends its probes just
  // before the deadline and answers what they came to.
  absl::Time Deadline(const Call& call) const {
    const size_t waves =
        (call.cells.size() + run_.concurrency - 1) / run_.concurrency;
    const absl::Time own =
        absl::Now() + static_cast<int64_t>(waves) * run_.per_probe + kCallSlack;
    return std::min(own, cut_);
  }

  // `call` is marked running; mu_ is not held (its answer takes it).
  void Start(Call& call) ABSL_LOCKS_EXCLUDED(mu_) {
    AgentClient& client = fleet_.client(call.src);
    ++call.attempts;
    call.response.Clear();
    call.ctx = client.NewContext();
    call.ctx->set_deadline(absl::ToChronoTime(Deadline(call)));
    client.agent().async()->Probe(
        call.ctx.get(), &call.request, &call.response,
        [this, &call](grpc::Status status) { Answered(call, status); });
  }

  // On a gRPC thread.
  void Answered(Call& call, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    call.running = false;
    answered_ = true;
    AgentClient& client = fleet_.client(call.src);
    const CallFailure failure = client.Describe(status);
    if (status.ok() || !failure.unreachable) reached_[call.src].store(true);
    if (status.ok()) return Record(call);
    const absl::Time retry_at = absl::Now() + Backoff(call.attempts);
    if (Retryable(status) && !cancelled_ && call.attempts < kMaxCallAttempts &&
        retry_at + run_.per_probe < cut_) {
      if (run_.verbose) {
        std::fprintf(stderr,
                     "sockctl: agent %s: probe call failed (%s: %s); "
                     "retrying in %s\n",
                     run_.agents[call.src].c_str(), failure.code.c_str(),
                     failure.Detail().c_str(),
                     absl::FormatDuration(retry_at - absl::Now()).c_str());
      }
      call.retry_at = retry_at;
      return;
    }
    if (cancelled_ || status.error_code() == grpc::StatusCode::CANCELLED) {
      return Give(call, "interrupted");
    }
    std::string why = absl::StrCat("agent ", run_.agents[call.src],
                                   " did not run the probes: ", failure.code,
                                   ": ", failure.Detail());
    if (call.attempts > 1) {
      absl::StrAppend(&why, " (", call.attempts, " attempts)");
    }
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        !failure.unreachable) {
      Give(call,
           absl::StrCat("no answer from agent ", run_.agents[call.src],
                        " by the deadline"),
           ProbeResult::kTimeout);
      return;
    }
    Give(call, why);
  }

  void Record(const Call& call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t k = 0; k < call.cells.size(); ++k) {
      MatrixCell& cell = cells_[call.cells[k]];
      if (static_cast<int>(k) >= call.response.outcomes_size()) {
        cell.result = ProbeResult::kError;
        cell.message = "the agent answered fewer outcomes than targets";
        continue;
      }
      const ProbeOutcome& o = call.response.outcomes(static_cast<int>(k));
      cell.result = ResultFromApi(o.result());
      cell.message = o.error();
      cell.rtt = cell.result == ProbeResult::kOk
                     ? FromProto(o.round_trip_time())
                     : absl::ZeroDuration();
    }
  }

  void Give(const Call& call, absl::string_view why,
            ProbeResult result = ProbeResult::kError)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i : call.cells) {
      cells_[i].result = result;
      cells_[i].message = std::string(why);
    }
  }

  const ProbeRun& run_;
  const Fleet& fleet_;
  const TargetOf& target_of_;
  std::vector<MatrixCell>& cells_;
  const absl::Time cut_;
  std::vector<std::atomic<bool>>& reached_;

  absl::Mutex mu_;
  // Each call's cells are written by its own answer only, under mu_.
  std::vector<std::unique_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

sockagent::v1::Transport ToApi(ProbeTransport transport) {
  return transport == ProbeTransport::kUdp ? sockagent::v1::TRANSPORT_UDP
                                           : sockagent::v1::TRANSPORT_TCP;
}

ProbeResult ResultFromApi(sockagent::v1::ProbeResult result) {
  switch (result) {
    case sockagent::v1::PROBE_RESULT_OK:
      return ProbeResult::kOk;
    case sockagent::v1::PROBE_RESULT_REFUSED:
      return ProbeResult::kRefused;
    case sockagent::v1::PROBE_RESULT_TIMEOUT:
      return ProbeResult::kTimeout;
    case sockagent::v1::PROBE_RESULT_UNREACHABLE:
      return ProbeResult::kUnreachable;
    case sockagent::v1::PROBE_RESULT_DNS:
      return ProbeResult::kDns;
    case sockagent::v1::PROBE_RESULT_TLS:
      return ProbeResult::kTls;
    default:
      return ProbeResult::kError;
  }
}

EchoServer DialTarget(const sockagent::v1::Server& server,
                      const std::string& dial_host) {
  EchoServer target;
  target.started = true;
  const auto& addresses = server.local_addresses();
  if (addresses.empty()) return target;
  target.port = addresses[0].port();
  const sockagent::v1::Family want = dial_host.find(':') != std::string::npos
                                         ? sockagent::v1::FAMILY_IPV6
                                         : sockagent::v1::FAMILY_IPV4;
  for (const auto& a : addresses) {
    if (a.family() == want) {
      target.port = a.port();
      break;
    }
  }
  return target;
}

void ProbeRound(const ProbeRun& run, const Fleet& fleet,
                const TargetOf& target_of, std::vector<MatrixCell>& cells,
                const std::vector<size_t>& which, absl::Time cut,
                std::vector<std::atomic<bool>>& reached) {
  if (which.empty()) return;
  Round round(run, fleet, target_of, cells, cut, reached);
  round.Run(which);
}

}  // namespace sockctl
