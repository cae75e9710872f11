// The text of /metrics: the agent's series in the Prometheus text format
// (0.0.4) or, when the scraper asks for it, OpenMetrics 1.0.
//
// Everything is read from counters kept up to date as things happen (the
// engine's EngineCounters, RpcMetrics, the resolver pool's load) and from
// /proc/self, so a scrape costs the same whatever the number of connections
// and takes the engine lock for no connection. Any thread (the metrics
// server's).
//
// Cardinality: labels take only fixed sets of values (transport, origin,
// close and drop reasons, gRPC code, the served methods), never an address
// or user-chosen string, with one exception: per-server series
// (sockagent_server_*{server="srv-N",name="..."}) for the servers started
// with `metrics`, at most EngineOptions::max_metrics_servers (64) of them,
// read by one ListServers on the engine's loop (a scrape waits at most 1 s
// for it, else goes without them). The output has at most a few hundred
// lines plus 10 per such server.
//
//   MetricsSources src{.engine = engine, .resolver = &pool};
//   std::string body = RenderMetrics(src, MetricsFormat::kPrometheus);
#ifndef SOCKAGENT_SERVICE_METRICS_H_
#define SOCKAGENT_SERVICE_METRICS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sockagent {

class Engine;
class ResolverPool;

struct MetricsSources {
  // Null: no engine series. Not const: the per-server series come from a
  // ListServers of the servers that asked for them.
  Engine* engine = nullptr;
  const ResolverPool* resolver = nullptr;  // Null: no resolver series.
  uint64_t resolver_queue_limit = 0;
  uint32_t max_watchers = 0;
  absl::Time started_at = absl::InfinitePast();
  std::string version;
};

enum class MetricsFormat { kPrometheus, kOpenMetrics };

// OpenMetrics when `accept` (the request's Accept header) names
// application/openmetrics-text, else the Prometheus text format.
MetricsFormat FormatForAccept(absl::string_view accept);

// The Content-Type of a body in `format`.
const char* MetricsContentType(MetricsFormat format);

std::string RenderMetrics(const MetricsSources& sources, MetricsFormat format);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_METRICS_H_
