#include "service/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "agent/engine.h"
#include "agent/resolver.h"
#include "service/metrics_rpc.h"

namespace sockagent {

namespace {

constexpr std::array<const char*, EngineCounters::kTransports> kTransport = {
    "tcp", "udp", "unix"};
constexpr std::array<const char*, EngineCounters::kOrigins> kOrigin = {
    "opened", "accepted", "udp_peer", "proxy_upstream"};
// CloseReason, in its order (kNone first: never counted).
constexpr std::array<const char*, EngineCounters::kCloseReasons> kReason = {
    "none",         "local_close",  "local_abort",   "peer_closed",
    "peer_reset",   "idle_timeout", "ttl_expired",   "server_stopped",
    "stream_ended", "error",        "agent_shutdown"};
constexpr std::array<const char*, static_cast<size_t>(DropReason::kCount)>
    kDropReason = {"buffer_full", "session_limit", "connection_limit",
                   "reply_budget", "fault"};
constexpr std::array<const char*, RpcMetrics::kCodes> kCode = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED"};

// Origins a transport's connections can have.
bool Valid(size_t transport, size_t origin) {
  const bool udp = transport == static_cast<size_t>(Transport::kUdp);
  if (origin == static_cast<size_t>(Origin::kOpened) ||
      origin == static_cast<size_t>(Origin::kProxyUpstream)) {
    return true;
  }
  return udp == (origin == static_cast<size_t>(Origin::kUdpPeer));
}

uint64_t Get(const EngineCounters::Counter& c) {
  return EngineCounters::Get(c);
}

// Writes metric families; counters get "_total" on their samples, and in
// OpenMetrics their family name goes without it.
class Writer {
 public:
  explicit Writer(MetricsFormat format) : format_(format) {}

  // `name` without "_total" for counters.
  // (The Prometheus text format names a counter's family as its samples,
  // with "_total"; OpenMetrics without.)
  void Family(absl::string_view name, absl::string_view type,
              absl::string_view help) {
    const std::string family =
        type == "counter" && format_ == MetricsFormat::kPrometheus
            ? absl::StrCat(name, "_total")
            : std::string(name);
    absl::StrAppend(&out_, "# HELP ", family, " ", help, "\n# TYPE ", family,
                    " ", type, "\n");
  }
  // `labels`: already formatted, without braces ("a=\"b\",c=\"d\"").
  void Sample(absl::string_view name, absl::string_view labels,
              absl::string_view value) {
    absl::StrAppend(&out_, name);
    if (!labels.empty()) absl::StrAppend(&out_, "{", labels, "}");
    absl::StrAppend(&out_, " ", value, "\n");
  }
  void Sample(absl::string_view name, absl::string_view labels,
              uint64_t value) {
    Sample(name, labels, absl::StrCat(value));
  }
  // Whole numbers as integers (byte counts beyond 2^53 lose their last
  // digits, as any float would), others with 10 significant digits.
  void Sample(absl::string_view name, absl::string_view labels, double value) {
    if (value == std::floor(value) && std::fabs(value) < 9.007e15) {
      Sample(name, labels, absl::StrCat(static_cast<int64_t>(value)));
    } else {
      Sample(name, labels, absl::StrFormat("%.10g", value));
    }
  }
  // A family of one unlabelled sample.
  void Counter(absl::string_view name, absl::string_view help, uint64_t value) {
    Family(name, "counter", help);
    Sample(absl::StrCat(name, "_total"), "", value);
  }
  void Gauge(absl::string_view name, absl::string_view help, double value) {
    Family(name, "gauge", help);
    Sample(name, "", value);
  }

  std::string Finish() {
    if (format_ == MetricsFormat::kOpenMetrics) out_ += "# EOF\n";
    return std::move(out_);
  }

 private:
  const MetricsFormat format_;
  std::string out_;
};

void RenderEngine(const MetricsSources& src, Writer& w) {
  const EngineCounters& k = src.engine->counters();
  const EngineOptions& o = src.engine->options();

  w.Family("sockagent_servers_listening", "gauge",
           "Servers (listeners) listening now, by transport.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    const uint64_t started = Get(k.servers_started[t]);
    const uint64_t stopped = Get(k.servers_stopped[t]);
    w.Sample("sockagent_servers_listening",
             absl::StrCat("transport=\"", kTransport[t], "\""),
             started > stopped ? started - stopped : 0);
  }
  w.Family("sockagent_servers_started", "counter",
           "Servers started, by transport.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    w.Sample("sockagent_servers_started_total",
             absl::StrCat("transport=\"", kTransport[t], "\""),
             Get(k.servers_started[t]));
  }
  w.Family("sockagent_servers_stopped", "counter",
           "Servers stopped (by StopServer, TTL or shutdown), by transport.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    w.Sample("sockagent_servers_stopped_total",
             absl::StrCat("transport=\"", kTransport[t], "\""),
             Get(k.servers_stopped[t]));
  }
  w.Gauge("sockagent_servers_limit", "Most servers at once (--max-servers).",
          o.max_servers);

  // Open = opened - closed, per (transport, origin).
  w.Family("sockagent_connections_open", "gauge",
           "Connections not closed yet (half-closed ones included), by "
           "transport and origin (opened: OpenClient/Stream; accepted: by a "
           "server; udp_peer: a UDP server's peer session).");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    for (size_t g = 0; g < kOrigin.size(); ++g) {
      if (!Valid(t, g)) continue;
      const uint64_t opened = Get(k.connections_opened[t][g]);
      uint64_t closed = 0;
      for (const auto& c : k.connections_closed[t][g]) closed += Get(c);
      w.Sample("sockagent_connections_open",
               absl::StrCat("transport=\"", kTransport[t], "\",origin=\"",
                            kOrigin[g], "\""),
               opened > closed ? opened - closed : 0);
    }
  }
  w.Family("sockagent_connections_half_closed", "gauge",
           "Connections of sockagent_connections_open that are half-closed, "
           "by transport, origin and state (peer_closed: the peer's FIN "
           "came; local_closed: the agent's FIN went or waits for queued "
           "bytes).");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    for (size_t g = 0; g < kOrigin.size(); ++g) {
      if (!Valid(t, g) || t == static_cast<size_t>(Transport::kUdp)) continue;
      for (size_t h = 0; h < 2; ++h) {
        w.Sample("sockagent_connections_half_closed",
                 absl::StrCat("transport=\"", kTransport[t], "\",origin=\"",
                              kOrigin[g], "\",state=\"",
                              h == 0 ? "peer_closed" : "local_closed", "\""),
                 Get(k.half_closed[t][g][h]));
      }
    }
  }
  w.Family("sockagent_connections_opened", "counter",
           "Connections accepted, connected or UDP peer sessions begun.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    for (size_t g = 0; g < kOrigin.size(); ++g) {
      if (!Valid(t, g)) continue;
      w.Sample("sockagent_connections_opened_total",
               absl::StrCat("transport=\"", kTransport[t], "\",origin=\"",
                            kOrigin[g], "\""),
               Get(k.connections_opened[t][g]));
    }
  }
  w.Family("sockagent_connections_closed", "counter",
           "Connections closed, by transport, origin and close reason.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    for (size_t g = 0; g < kOrigin.size(); ++g) {
      if (!Valid(t, g)) continue;
      for (size_t r = 1; r < kReason.size(); ++r) {
        w.Sample("sockagent_connections_closed_total",
                 absl::StrCat("transport=\"", kTransport[t], "\",origin=\"",
                              kOrigin[g], "\",reason=\"", kReason[r], "\""),
                 Get(k.connections_closed[t][g][r]));
      }
    }
  }
  w.Family("sockagent_connections_rejected", "counter",
           "Connections refused at once (accepts closed with RST, new UDP "
           "peers ignored), by reason (limit: --max-connections or the "
           "buffered-bytes bound).");
  w.Sample(
      "sockagent_connections_rejected_total", "reason=\"limit\"",
      Get(k.connections_rejected[static_cast<size_t>(RejectReason::kLimit)]));
  w.Gauge("sockagent_connections_limit",
          "Most connections at once (--max-connections).", o.max_connections);

  w.Family("sockagent_received_bytes", "counter",
           "Payload bytes read from sockets, by transport.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    w.Sample("sockagent_received_bytes_total",
             absl::StrCat("transport=\"", kTransport[t], "\""),
             Get(k.bytes_received[t]));
  }
  w.Family("sockagent_sent_bytes", "counter",
           "Payload bytes written to sockets, by transport.");
  for (size_t t = 0; t < kTransport.size(); ++t) {
    w.Sample("sockagent_sent_bytes_total",
             absl::StrCat("transport=\"", kTransport[t], "\""),
             Get(k.bytes_sent[t]));
  }
  w.Counter("sockagent_received_datagrams", "UDP datagrams received.",
            Get(k.datagrams_received));
  w.Counter("sockagent_sent_datagrams", "UDP datagrams sent.",
            Get(k.datagrams_sent));
  w.Family("sockagent_dropped_datagrams", "counter",
           "UDP datagrams dropped, by reason (buffer_full: receive buffer "
           "or the agent-wide bound; session_limit and connection_limit: a "
           "new peer refused; reply_budget: an echo/greeting reply not "
           "sent).");
  for (size_t d = 0; d < kDropReason.size(); ++d) {
    w.Sample("sockagent_dropped_datagrams_total",
             absl::StrCat("reason=\"", kDropReason[d], "\""),
             Get(k.datagrams_dropped[d]));
  }

  w.Gauge("sockagent_buffered_bytes",
          "Bytes buffered by the agent now (receive and send buffers, "
          "closed connections' unreceived bytes).",
          static_cast<double>(Get(k.buffered_bytes)));
  w.Gauge("sockagent_buffered_limit_bytes",
          "Bound of sockagent_buffered_bytes (--max-total-buffered-bytes).",
          static_cast<double>(o.max_total_buffered_bytes));
  w.Gauge("sockagent_connection_receive_buffer_limit_bytes",
          "Receive buffer bound per connection (--recv-buffer-bytes).",
          static_cast<double>(o.recv_buffer_bytes));
  w.Gauge("sockagent_connection_send_buffer_limit_bytes",
          "Send buffer bound per connection (--send-buffer-bytes).",
          static_cast<double>(o.send_buffer_bytes));

  w.Gauge("sockagent_watchers", "Watch calls subscribed now.",
          static_cast<double>(Get(k.watchers)));
  if (src.max_watchers > 0) {
    w.Gauge("sockagent_watchers_limit", "Most Watch calls (--max-watchers).",
            src.max_watchers);
  }
  w.Counter("sockagent_events", "Events the engine produced.", Get(k.events));
  w.Counter("sockagent_events_lost",
            "Events a watcher lost (its queue or the agent-wide watch bytes "
            "were full), summed over watchers.",
            Get(k.events_lost));
}

void RenderRpc(Writer& w) {
  const RpcMetrics& rpc = RpcMetrics::Get();
  w.Family("sockagent_rpcs", "counter",
           "gRPC calls answered, by service, method and status code (OK is "
           "always listed; other codes once they occurred).");
  for (const auto& m : rpc.methods()) {
    for (int code = 0; code < RpcMetrics::kCodes; ++code) {
      const uint64_t n = m->calls[code].load(std::memory_order_relaxed);
      if (n == 0 && code != 0) continue;
      w.Sample("sockagent_rpcs_total",
               absl::StrCat("service=\"", m->service, "\",method=\"", m->name,
                            "\",code=\"", kCode[code], "\""),
               n);
    }
  }
  w.Family("sockagent_rpc_duration_seconds", "histogram",
           "Time from a unary call's arrival to its status, by service and "
           "method (methods called at least once).");
  for (const auto& m : rpc.methods()) {
    std::array<uint64_t, RpcMetrics::kBuckets.size() + 1> b;
    uint64_t total = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      b[i] = m->bucket[i].load(std::memory_order_relaxed);
      total += b[i];
    }
    if (total == 0) continue;
    const std::string base =
        absl::StrCat("service=\"", m->service, "\",method=\"", m->name, "\"");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      cumulative += b[i];
      const std::string le = i < RpcMetrics::kBuckets.size()
                                 ? absl::StrCat(RpcMetrics::kBuckets[i])
                                 : std::string("+Inf");
      w.Sample("sockagent_rpc_duration_seconds_bucket",
               absl::StrCat(base, ",le=\"", le, "\""), cumulative);
    }
    w.Sample(
        "sockagent_rpc_duration_seconds_sum", base,
        static_cast<double>(m->latency_sum_ns.load(std::memory_order_relaxed)) /
            1e9);
    w.Sample("sockagent_rpc_duration_seconds_count", base, cumulative);
  }
  w.Counter("sockagent_auth_failures",
            "Calls refused as UNAUTHENTICATED (no or wrong bearer token).",
            rpc.auth_failures());
  w.Counter("sockagent_policy_refusals",
            "Calls refused as PERMISSION_DENIED (the --allow-* policy, "
            "privileged ports).",
            rpc.policy_refusals());
}

// /proc/self/stat fields after the command's closing parenthesis, so that
// field 3 (state) is [0].
std::vector<std::string> StatFields() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return {};
  return absl::StrSplit(absl::string_view(text).substr(paren + 1),
                        absl::ByAnyChar(" \n"), absl::SkipEmpty());
}

uint64_t Field(const std::vector<std::string>& f, size_t number) {
  uint64_t v = 0;
  if (number >= 3 && number - 3 < f.size()) {
    (void)absl::SimpleAtoi(f[number - 3], &v);
  }
  return v;
}

// Linux 6.2 and later report the number of open descriptors as the size
// of /proc/self/fd: one stat, whatever their number. Older kernels report
// 0, and the directory is listed instead (O(descriptors): ~110 ms for
// 10,000 on this 2-core machine under load).
size_t OpenFds() {
  struct stat st {};
  if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0) {
    return static_cast<size_t>(st.st_size);
  }
  size_t fds = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(dir);
    if (fds > 0) --fds;  // The directory's own descriptor.
  }
  return fds;
}

void RenderProcess(const MetricsSources& src, Writer& w) {
  const std::vector<std::string> stat = StatFields();
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  w.Family("process_cpu_seconds", "counter",
           "User and system CPU time spent, in seconds.");
  w.Sample("process_cpu_seconds_total", "",
           static_cast<double>(Field(stat, 14) + Field(stat, 15)) / tick);
  w.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
          static_cast<double>(Field(stat, 24)) * page);
  w.Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
          static_cast<double>(Field(stat, 23)));
  w.Gauge("process_open_fds", "Open file descriptors.",
          static_cast<double>(OpenFds()));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    w.Gauge("process_max_fds", "Most open file descriptors (soft limit).",
            static_cast<double>(limit.rlim_cur));
  }
  w.Gauge("process_threads", "Threads of the process.",
          static_cast<double>(Field(stat, 20)));
  if (src.started_at != absl::InfinitePast()) {
    w.Gauge("process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            absl::ToDoubleSeconds(src.started_at - absl::UnixEpoch()));
  }
}

}  // namespace

MetricsFormat FormatForAccept(absl::string_view accept) {
  return absl::StrContains(accept, "application/openmetrics-text")
             ? MetricsFormat::kOpenMetrics
             : MetricsFormat::kPrometheus;
}

const char* MetricsContentType(MetricsFormat format) {
  return format == MetricsFormat::kOpenMetrics
             ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8";
}

namespace {

// The servers started with `metrics` (at most max_metrics_servers), listed
// on the engine's loop; empty if that takes more than a second.
std::vector<ServerInfo> MetricsServers(Engine& engine) {
  struct Shared {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    std::vector<ServerInfo> servers ABSL_GUARDED_BY(mu);
  };
  auto shared = std::make_shared<Shared>();
  ServerFilter filter;
  filter.metrics_only = true;
  filter.page_size = engine.options().max_metrics_servers;
  engine.ListServers(std::move(filter),
                     [shared](absl::StatusOr<Page<ServerInfo>> page) {
                       absl::MutexLock lock(&shared->mu);
                       if (page.ok()) shared->servers = std::move(page->items);
                       shared->done = true;
                     });
  absl::MutexLock lock(&shared->mu);
  if (!shared->mu.AwaitWithTimeout(absl::Condition(&shared->done),
                                   absl::Seconds(1))) {
    return {};
  }
  return std::move(shared->servers);
}

void RenderServers(const std::vector<ServerInfo>& servers, Writer& w) {
  if (servers.empty()) return;
  struct Series {
    const char* name;
    const char* type;
    const char* help;
    uint64_t ServerCounters::*field;
  };
  static constexpr Series kSeries[] = {
      {"sockagent_server_accepted_connections", "counter",
       "Connections this server accepted (UDP: peer sessions).",
       &ServerCounters::connections_accepted},
      {"sockagent_server_open_connections", "gauge",
       "This server's connections open now.",
       &ServerCounters::connections_active},
      {"sockagent_server_rejected_connections", "counter",
       "Connections this server refused at a limit.",
       &ServerCounters::connections_rejected},
      {"sockagent_server_received_bytes", "counter",
       "Bytes this server's connections received.",
       &ServerCounters::bytes_received},
      {"sockagent_server_sent_bytes", "counter",
       "Bytes this server's connections sent.", &ServerCounters::bytes_sent},
      {"sockagent_server_received_datagrams", "counter",
       "Datagrams this UDP server received.",
       &ServerCounters::datagrams_received},
      {"sockagent_server_sent_datagrams", "counter",
       "Datagrams this UDP server sent.", &ServerCounters::datagrams_sent},
      {"sockagent_server_dropped_datagrams", "counter",
       "Datagrams this UDP server dropped (buffer full, session cap).",
       &ServerCounters::datagrams_dropped},
      {"sockagent_server_tls_handshakes", "counter",
       "TLS handshakes this server completed.",
       &ServerCounters::tls_handshakes},
      {"sockagent_server_tls_handshake_failures", "counter",
       "TLS handshakes this server saw fail (timeouts included).",
       &ServerCounters::tls_handshake_failures},
  };
  for (const Series& series : kSeries) {
    const bool counter = absl::string_view(series.type) == "counter";
    w.Family(series.name, series.type, series.help);
    for (const ServerInfo& s : servers) {
      // Ids are srv-N and names DNS labels: nothing to escape.
      w.Sample(counter ? absl::StrCat(series.name, "_total")
                       : std::string(series.name),
               absl::StrCat("server=\"", s.id, "\",name=\"", s.name,
                            "\",transport=\"",
                            kTransport[static_cast<size_t>(s.transport)], "\""),
               s.counters.*series.field);
    }
  }
}

}  // namespace

std::string RenderMetrics(const MetricsSources& src, MetricsFormat format) {
  Writer w(format);
  w.Family("sockagent_build_info", "gauge",
           "Always 1; the agent's version as a label.");
  w.Sample("sockagent_build_info",
           absl::StrCat("version=\"", src.version, "\""), uint64_t{1});
  if (src.engine != nullptr) {
    RenderEngine(src, w);
    RenderServers(MetricsServers(*src.engine), w);
  }
  if (src.resolver != nullptr) {
    const ResolverPool::Load load = src.resolver->CurrentLoad();
    w.Gauge("sockagent_resolver_queued_lookups",
            "Name lookups waiting for a resolver thread.",
            static_cast<double>(load.queued));
    w.Gauge("sockagent_resolver_running_lookups", "Name lookups running now.",
            static_cast<double>(load.running));
    const ResolverPool::Latency lat = src.resolver->LookupLatency();
    w.Family("sockagent_resolver_lookup_duration_seconds", "histogram",
             "Time a name lookup took on a resolver thread (Resolve calls, "
             "the names of OpenClient, Probe and proxies, and the agent's "
             "own FQDN at start).");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < lat.buckets.size(); ++i) {
      cumulative += lat.buckets[i];
      w.Sample("sockagent_resolver_lookup_duration_seconds_bucket",
               absl::StrCat("le=\"",
                            i < ResolverPool::kLatencyBuckets.size()
                                ? absl::StrCat(ResolverPool::kLatencyBuckets[i])
                                : std::string("+Inf"),
                            "\""),
               cumulative);
    }
    w.Sample("sockagent_resolver_lookup_duration_seconds_sum", "",
             lat.sum_seconds);
    w.Sample("sockagent_resolver_lookup_duration_seconds_count", "",
             cumulative);
    if (src.resolver_queue_limit > 0) {
      w.Gauge("sockagent_resolver_queue_limit",
              "Most Resolve calls waiting (--resolver-queue).",
              static_cast<double>(src.resolver_queue_limit));
    }
  }
  RenderRpc(w);
  RenderProcess(src, w);
  return w.Finish();
}

}  // namespace sockagent
