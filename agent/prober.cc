#include "agent/prober.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/probe_run.h"
#include "agent/quote.h"
#include "agent/tls.h"

namespace sockagent {
namespace {

constexpr absl::Duration kDefaultTimeout = absl::Seconds(2);
constexpr size_t kDefaultConcurrency = 64;
// sun_path holds 108 bytes, one of them the terminating NUL.
constexpr size_t kMaxUnixPathBytes = 107;

std::string Field(size_t i, absl::string_view name) {
  return absl::StrCat("targets[", i, "].", name);
}

absl::Status CheckTarget(const ProbeTarget& t, size_t i,
                         const ProberOptions& o) {
  const Endpoint& e = t.endpoint;
  if (t.transport == Transport::kUnix) {
    if (e.unix_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Field(i, "endpoint.unix_path"), ": a UNIX probe needs a path"));
    }
    if (e.unix_path.size() > kMaxUnixPathBytes ||
        e.unix_path.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(Field(i, "endpoint.unix_path"), ": at most ",
                       kMaxUnixPathBytes, " bytes and no NUL"));
    }
  } else {
    if (e.host.empty() || e.host.size() > kMaxResolveNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(Field(i, "endpoint.host"), ": a host of 1 to ",
                       kMaxResolveNameBytes, " bytes is needed"));
    }
    uint32_t port = 0;
    if (e.port.empty() || e.port.size() > kMaxResolveNameBytes ||
        (absl::SimpleAtoi(e.port, &port) && (port == 0 || port > 65535))) {
      return absl::InvalidArgumentError(
          absl::StrCat(Field(i, "endpoint.port"), ": ", QuoteInput(e.port),
                       " is not a port (1-65535) or a service name"));
    }
  }
  if (t.payload.size() > o.max_payload_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(i, "payload"), ": ", t.payload.size(),
                     " bytes; at most ", o.max_payload_bytes));
  }
  if (t.payload.empty() && t.transport == Transport::kUdp) {
    return absl::InvalidArgumentError(absl::StrCat(
        Field(i, "payload"),
        ": a UDP probe needs a payload (UDP has no handshake to observe)"));
  }
  if (t.payload.empty() && t.expect_echo) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(i, "expect_echo"), ": needs a payload to echo"));
  }
  if (t.tls.has_value() && t.transport != Transport::kTcp) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(i, "tls"), ": TLS goes with TCP targets (",
                     t.transport == Transport::kUdp ? "UDP has no DTLS here"
                                                    : "not on UNIX probes",
                     ")"));
  }
  return absl::OkStatus();
}

// Targets that ask for the same TLS share one OpenSSL context (a context
// with a CA costs a PEM parse and a store; see Prober::Start); each host
// gets a light TlsClientContext over it (its name to verify).
struct TlsSpecKey {
  const TlsClientSpec* spec;

  template <typename H>
  friend H AbslHashValue(H h, const TlsSpecKey& k) {
    const TlsClientSpec& s = *k.spec;
    return H::combine(std::move(h), s.server_name, static_cast<int>(s.trust),
                      s.ca_pem, s.certificate_chain_pem, s.private_key_pem,
                      s.alpn, static_cast<int>(s.min_version),
                      static_cast<int>(s.max_version),
                      absl::ToInt64Nanoseconds(s.handshake_timeout));
  }
  bool operator==(const TlsSpecKey& o) const { return *spec == *o.spec; }
};

// The targets[i].tls field path for context errors, which name their field
// "tls.<field>".
absl::Status TlsFieldError(size_t i, const absl::Status& s) {
  const absl::string_view words = s.message();
  return absl::Status(s.code(),
                      absl::StartsWith(words, "tls")
                          ? absl::StrCat("targets[", i, "].", words)
                          : absl::StrCat(Field(i, "tls"), ": ", words));
}

// A context per target with TLS (null for the others): one OpenSSL context
// per distinct spec (at most `max_specs`, counted in *made), one name per
// (spec, host). A refused spec is named "targets[i].tls.<field>".
absl::StatusOr<std::vector<std::shared_ptr<const TlsClientContext>>>
MakeTlsContexts(const std::vector<ProbeTarget>& targets, size_t max_specs,
                size_t* made) {
  std::vector<std::shared_ptr<const TlsClientContext>> out(targets.size());
  struct PerSpec {
    std::shared_ptr<const TlsClientContext> base;
    absl::flat_hash_map<std::string, std::shared_ptr<const TlsClientContext>>
        by_host;
  };
  // Counted before any is built: a refused call costs no context.
  absl::flat_hash_set<TlsSpecKey, absl::Hash<TlsSpecKey>> distinct;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!targets[i].tls.has_value()) continue;
    distinct.insert(TlsSpecKey{&*targets[i].tls});
    if (distinct.size() > max_specs) {
      return absl::InvalidArgumentError(absl::StrCat(
          Field(i, "tls"), ": more than ", max_specs,
          " different TLS settings in one call; at most ", max_specs,
          " (targets may share one and differ in host)"));
    }
  }
  absl::flat_hash_map<TlsSpecKey, PerSpec, absl::Hash<TlsSpecKey>> specs;
  for (size_t i = 0; i < targets.size(); ++i) {
    const ProbeTarget& t = targets[i];
    if (!t.tls.has_value()) continue;
    const std::string& host = t.endpoint.host;
    auto it = specs.find(TlsSpecKey{&*t.tls});
    if (it == specs.end()) {
      absl::StatusOr<std::shared_ptr<const TlsClientContext>> ctx =
          TlsClientContext::Create(*t.tls, host);
      if (!ctx.ok()) return TlsFieldError(i, ctx.status());
      ++*made;
      PerSpec& per = specs[TlsSpecKey{&*t.tls}];
      per.base = *ctx;
      per.by_host.emplace(host, *ctx);
      out[i] = *std::move(ctx);
      continue;
    }
    PerSpec& per = it->second;
    auto named = per.by_host.find(host);
    if (named == per.by_host.end()) {
      absl::StatusOr<std::shared_ptr<const TlsClientContext>> ctx =
          per.base->ForHost(host);
      if (!ctx.ok()) return TlsFieldError(i, ctx.status());
      named = per.by_host.emplace(host, *std::move(ctx)).first;
    }
    out[i] = named->second;
  }
  return out;
}

}  // namespace

const char* ProbeClassName(ProbeClass c) {
  switch (c) {
    case ProbeClass::kOk:
      return "OK";
    case ProbeClass::kRefused:
      return "REFUSED";
    case ProbeClass::kTimeout:
      return "TIMEOUT";
    case ProbeClass::kUnreachable:
      return "UNREACHABLE";
    case ProbeClass::kDns:
      return "DNS";
    case ProbeClass::kTls:
      return "TLS";
    case ProbeClass::kError:
      break;
  }
  return "ERROR";
}

struct Prober::Call {
  ProbeSpec spec;
  Done<absl::StatusOr<ProbeReport>> done;
  ProbeReport report;
  absl::Time started;
  size_t next = 0;  // The next target to start.
  size_t running = 0;
  size_t finished = 0;
  bool ended = false;
  bool filling = false;                         // Inside Prober::Fill.
  std::vector<std::shared_ptr<ProbeRun>> live;  // By target; null when done.
  // By target; null without TLS. Shared by targets with the same spec and
  // host, and by each probe's session while it lives.
  std::vector<std::shared_ptr<const TlsClientContext>> tls;

  // A call dropped unrun (the loop stopped before it began) still answers.
  ~Call() {
    if (!ended && done) done(absl::UnavailableError("agent shutting down"));
  }
};

Prober::Prober(asio::io_context& io, ProberOptions options)
    : io_(io), options_(options), alive_(std::make_shared<Alive>()) {
  absl::MutexLock lock(&alive_->mu);
  alive_->io = &io_;
}

Prober::~Prober() { Shutdown(); }

uint64_t Prober::Start(ProbeSpec spec, Done<absl::StatusOr<ProbeReport>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  const size_t n = spec.targets.size();
  absl::Status bad;
  if (n == 0) {
    bad = absl::InvalidArgumentError("targets: at least one target is needed");
  } else if (n > options_.max_targets) {
    bad = absl::InvalidArgumentError(
        absl::StrCat("targets: ", n, " targets; at most ", options_.max_targets,
                     " per call"));
  } else if (spec.timeout < absl::ZeroDuration() ||
             spec.timeout > options_.max_timeout) {
    bad = absl::InvalidArgumentError(absl::StrCat(
        "timeout: ", absl::FormatDuration(spec.timeout),
        " is not between 0 and ", absl::FormatDuration(options_.max_timeout)));
  }
  size_t total = 0;
  for (size_t i = 0; bad.ok() && i < n; ++i) {
    bad = CheckTarget(spec.targets[i], i, options_);
    total += spec.targets[i].payload.size();
  }
  if (bad.ok() && total > options_.max_total_payload_bytes) {
    bad = absl::InvalidArgumentError(
        absl::StrCat("payload: ", total, " bytes in all targets; at most ",
                     options_.max_total_payload_bytes, " per call"));
  }
  if (!bad.ok()) {
    done(bad);
    return token;
  }
  if (calls_.fetch_add(1) >= options_.max_calls) {
    calls_.fetch_sub(1);
    done(absl::ResourceExhaustedError(absl::StrCat(
        "probe: ", options_.max_calls,
        " Probe calls are running (the agent's bound); retry after one "
        "ends")));
    return token;
  }
  // After admission: a context costs CPU (~0.1 ms with a CA; see
  // MakeTlsContexts), which a refused call should not spend.
  size_t made = 0;
  absl::StatusOr<std::vector<std::shared_ptr<const TlsClientContext>>> tls =
      MakeTlsContexts(spec.targets, options_.max_tls_specs, &made);
  tls_contexts_made_.fetch_add(made);
  if (!tls.ok()) {
    calls_.fetch_sub(1);
    done(tls.status());
    return token;
  }
  if (spec.timeout == absl::ZeroDuration()) spec.timeout = kDefaultTimeout;
  if (spec.concurrency == 0) spec.concurrency = kDefaultConcurrency;
  spec.concurrency = std::min(spec.concurrency, options_.max_concurrency);
  auto call = std::make_shared<Call>();
  call->spec = std::move(spec);
  call->tls = *std::move(tls);
  call->done = std::move(done);
  call->report.outcomes.resize(n);
  call->live.resize(n);
  asio::post(io_, [this, token, call]() mutable { Begin(token, call); });
  return token;
}

void Prober::Begin(uint64_t token, std::shared_ptr<Call> call) {
  call->started = absl::Now();
  running_.emplace(token, call);
  Fill(token, call);
}

void Prober::Fill(uint64_t token, const std::shared_ptr<Call>& call) {
  // A probe that fails at once (policy, a UDP socket error) ends inside
  // run->Begin and lands here again: the loop below picks its room up.
  if (call->filling) return;
  call->filling = true;
  while (!call->ended && call->next < call->spec.targets.size() &&
         call->running < call->spec.concurrency) {
    const size_t i = call->next++;
    if (absl::Now() >= call->spec.deadline) {
      ProbeOutcome& o = call->report.outcomes[i];
      o.result = ProbeClass::kTimeout;
      o.error = "not started: the call's deadline passed";
      ++call->finished;
      continue;
    }
    ++call->running;
    std::shared_ptr<ProbeRun> run = ProbeRun::Make(
        io_, options_, alive_, call->spec.targets[i], i, call->spec.timeout,
        call->tls[i], [this, token, call](size_t index, ProbeOutcome outcome) {
          call->report.outcomes[index] = std::move(outcome);
          call->live[index].reset();
          --call->running;
          ++call->finished;
          Fill(token, call);
        });
    call->live[i] = run;
    run->Begin(call->spec.deadline);
  }
  call->filling = false;
  if (!call->ended && call->finished == call->spec.targets.size()) {
    Finish(token, absl::OkStatus());
  }
}

void Prober::Finish(uint64_t token, absl::Status status) {
  auto it = running_.find(token);
  if (it == running_.end()) return;
  std::shared_ptr<Call> call = std::move(it->second);
  running_.erase(it);
  call->ended = true;
  for (auto& run : call->live) {
    if (run != nullptr) run->Abandon();
  }
  call->live.clear();
  calls_.fetch_sub(1);
  call->report.took = absl::Now() - call->started;
  if (status.ok()) {
    call->done(std::move(call->report));
  } else {
    call->done(std::move(status));
  }
}

void Prober::Cancel(uint64_t token) {
  asio::post(io_, [this, token] {
    Finish(token, absl::CancelledError("probe: the call was cancelled"));
  });
}

void Prober::Shutdown() {
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
