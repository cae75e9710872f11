// /metrics (--metrics-listen, service/metrics_server.h) as an SRE uses it: a
// real sockagentd scraped by a real Prometheus server (Debian `prometheus`)
// on loopback, PromQL through Prometheus's HTTP API after a known workload;
// `promtool check metrics` on the agent's output; the metrics token; bad
// flags refusing to start. HTTP requests are made with curl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/support/agent_process.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kControlToken[] = "metrics-test-control-token-0123456789";
constexpr char kMetricsToken[] = "metrics-test-scrape-token-abcdefghij";

struct Http {
  int status = 0;
  std::string content_type;
  std::string body;
};

// GET with curl; `headers` as "Name: value".
Http Get(const std::string& url, const std::vector<std::string>& headers = {},
         const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {
      "curl", "-sS", "--max-time", "20",
      "-o",   "-",   "-w",         "\n%{http_code} %{content_type}"};
  for (const auto& h : headers) {
    argv.push_back("-H");
    argv.push_back(h);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  CommandResult r = RunCommand(argv);
  Http out;
  const size_t nl = r.out.rfind('\n');
  if (r.exit_code != 0 || nl == std::string::npos) {
    out.body = r.err;
    return out;
  }
  out.body = r.out.substr(0, nl);
  const std::string tail = r.out.substr(nl + 1);
  const size_t sp = tail.find(' ');
  (void)absl::SimpleAtoi(tail.substr(0, sp), &out.status);
  if (sp != std::string::npos) out.content_type = tail.substr(sp + 1);
  return out;
}

// A loopback port nobody uses now (Prometheus cannot report a port it
// picked itself): bound and closed, so another process could take it in
// between; Prometheus then fails to start and the test says so.
uint16_t FreePort() {
  uint16_t port = 0;
  Fd fd = TcpListen(1, &port);
  return port;
}

class Prometheus {
 public:
  // Starts prometheus on 127.0.0.1 scraping `target` (HOST:PORT) every
  // second; waits until its API answers.
  static std::unique_ptr<Prometheus> Start(const std::string& dir,
                                           const std::string& target,
                                           const std::string& token_file) {
    auto p = std::make_unique<Prometheus>();
    const std::string config = dir + "/prometheus.yml";
    std::ofstream(config)
        << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        << "scrape_configs:\n  - job_name: sockagent\n"
        << (token_file.empty()
                ? ""
                : "    authorization:\n      credentials_file: " + token_file +
                      "\n")
        << "    static_configs:\n      - targets: ['" << target << "']\n";
    p->port_ = FreePort();
    auto child = ChildProcess::Start(
        {"prometheus", "--config.file=" + config,
         "--storage.tsdb.path=" + dir + "/data",
         absl::StrCat("--web.listen-address=127.0.0.1:", p->port_),
         "--log.level=warn"});
    if (!child.ok()) return nullptr;
    p->child_ = *std::move(child);
    if (!WaitFor([&] { return p->Query("vector(1)").has_value(); },
                 absl::Seconds(60))) {
      return nullptr;
    }
    return p;
  }

  ~Prometheus() {
    if (child_) (void)child_->Stop(SIGTERM, absl::Now() + absl::Seconds(20));
  }

  // The value of an instant query's first sample; nullopt when the query
  // fails or returns nothing.
  std::optional<double> Query(const std::string& promql) {
    CommandResult r =
        RunCommand({"curl", "-sS", "--max-time", "10", "--data-urlencode",
                    "query=" + promql,
                    absl::StrCat("http://127.0.0.1:", port_, "/api/v1/query")});
    if (r.exit_code != 0) return std::nullopt;
    std::smatch m;
    static const std::regex kValue(R"re("value":\[[0-9.e+]+,"([^"]+)"\])re");
    if (!std::regex_search(r.out, m, kValue)) return std::nullopt;
    double v = 0;
    if (!absl::SimpleAtod(m[1].str(), &v)) return std::nullopt;
    return v;
  }

  // Waits until `promql` evaluates to `want` (later scrapes bring the
  // agent's newest counts); returns the last value seen.
  std::optional<double> WaitForValue(const std::string& promql, double want) {
    std::optional<double> last;
    WaitFor(
        [&] {
          last = Query(promql);
          return last.has_value() && *last == want;
        },
        absl::Seconds(30));
    return last;
  }

 private:
  std::unique_ptr<ChildProcess> child_;
  uint16_t port_ = 0;
};

class Metrics : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    control_token_file_ = dir_.path() + "/control-token";
    std::ofstream(control_token_file_) << kControlToken << "\n";
    chmod(control_token_file_.c_str(), 0600);
    std::vector<std::string> args = {"--token-file=" + control_token_file_,
                                     "--metrics-listen=127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto agent = AgentProcess::Start(args);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    ASSERT_THAT(agent_->metrics_url(), HasSubstr("/metrics"));
  }

  CommandResult Ctl(const std::vector<std::string>& args,
                    bool with_token = true) {
    std::vector<std::string> all;
    if (with_token) all = {"--token-file", control_token_file_};
    all.insert(all.end(), args.begin(), args.end());
    return RunSockctl(agent_->address(), all);
  }

  // "127.0.0.1:PORT" of a new server.
  uint16_t StartServer(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"server", "start", "-o", "addr",
                                    "--port", "0",     "-4"};
    all.insert(all.end(), args.begin(), args.end());
    CommandResult r = Ctl(all);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string addr(absl::StripAsciiWhitespace(r.out));
    int port = 0;
    EXPECT_TRUE(absl::SimpleAtoi(addr.substr(addr.rfind(':') + 1), &port))
        << addr;
    return static_cast<uint16_t>(port);
  }

  TempDir dir_;
  std::string control_token_file_;
  std::unique_ptr<AgentProcess> agent_;
};

// The agent's counters after a known workload, as PromQL sees them.
TEST_F(Metrics, PrometheusScrapesTheWorkloadsCounts) {
  Start({"--allow-bind-ports=0,1024-65535"});
  const uint16_t tcp = StartServer({"--echo"});
  const uint16_t udp = StartServer({"--udp", "--echo"});
  // 3 TCP connections, 10 bytes each way, closed by the peer (FIN).
  for (int i = 0; i < 3; ++i) {
    Fd c = TcpConnect(Ip("127.0.0.1", tcp));
    ASSERT_TRUE(c.valid());
    ASSERT_TRUE(WriteAll(c.get(), "0123456789"));
    ASSERT_EQ(ReadExactly(c.get(), 10), "0123456789");
    shutdown(c.get(), SHUT_WR);
    EXPECT_EQ(ReadToEof(c.get()), "");
  }
  // 2 datagrams of 4 bytes from one peer, echoed.
  Fd u = UdpBound();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendTo(u.get(), "ping", Ip("127.0.0.1", udp)));
    ASSERT_TRUE(RecvDatagram(u.get()).has_value());
  }
  // A policy refusal (port 80 is outside --allow-bind-ports) and an auth
  // failure (no token).
  EXPECT_NE(Ctl({"server", "start", "--echo", "--port", "80"}).exit_code, 0);
  EXPECT_NE(Ctl({"server", "list"}, /*with_token=*/false).exit_code, 0);
  // Two name lookups (numeric: no DNS server is asked).
  EXPECT_EQ(Ctl({"resolve", "127.0.0.1"}).exit_code, 0);
  EXPECT_EQ(Ctl({"resolve", "::1", "80"}).exit_code, 0);

  // The scrape target: HOST:PORT of the metrics URL.
  std::smatch m;
  const std::string url = agent_->metrics_url();
  ASSERT_TRUE(std::regex_search(url, m, std::regex(R"(//([^/]+)/metrics)")));
  auto prom = Prometheus::Start(dir_.path(), m[1], "");
  ASSERT_NE(prom, nullptr) << "prometheus did not start";
  EXPECT_EQ(prom->WaitForValue("up{job=\"sockagent\"}", 1), 1);

  const std::pair<std::string, double> expected[] = {
      {R"(sockagent_connections_opened_total{transport="tcp",origin="accepted"})",
       3},
      {R"(sockagent_connections_closed_total{transport="tcp",origin="accepted",reason="peer_closed"})",
       3},
      {R"(sockagent_connections_open{transport="tcp",origin="accepted"})", 0},
      {R"(sockagent_connections_open{transport="udp",origin="udp_peer"})", 1},
      {R"(sockagent_received_bytes_total{transport="tcp"})", 30},
      {R"(sockagent_sent_bytes_total{transport="tcp"})", 30},
      {R"(sockagent_received_bytes_total{transport="udp"})", 8},
      {"sockagent_received_datagrams_total", 2},
      {"sockagent_sent_datagrams_total", 2},
      {R"(sockagent_servers_listening{transport="tcp"})", 1},
      {R"(sockagent_servers_listening{transport="udp"})", 1},
      {R"(sockagent_rpcs_total{method="StartServer",code="OK"})", 2},
      {R"(sockagent_rpcs_total{method="StartServer",code="PERMISSION_DENIED"})",
       1},
      {R"(sockagent_rpc_duration_seconds_count{method="StartServer"})", 3},
      {"sockagent_policy_refusals_total", 1},
      {"sockagent_auth_failures_total", 1},
      {"sockagent_buffered_bytes", 0},
      {"sockagent_buffered_limit_bytes", 1 << 30},
      // The two resolves, and the agent's own FQDN lookup at start.
      {"sockagent_resolver_lookup_duration_seconds_count", 3},
      {R"(sockagent_resolver_lookup_duration_seconds_bucket{le="+Inf"})", 3},
  };
  for (const auto& [query, want] : expected) {
    EXPECT_EQ(prom->WaitForValue(query, want), want) << query;
  }
  // Process series, from /proc.
  EXPECT_GT(prom->Query("process_resident_memory_bytes").value_or(0), 1e6);
  EXPECT_GT(prom->Query("process_open_fds").value_or(0), 3);
  EXPECT_GE(prom->Query("process_max_fds").value_or(0),
            prom->Query("process_open_fds").value_or(1e9));
  EXPECT_GT(prom->Query("process_threads").value_or(0), 2);
  EXPECT_NEAR(prom->Query("process_start_time_seconds").value_or(0),
              absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()), 600);
}

// promtool's linter (names, units, _total, HELP/TYPE) finds nothing in
// what the agent serves, after a workload touched every kind of series.
TEST_F(Metrics, PromtoolFindsNothingToLint) {
  Start();
  const uint16_t tcp = StartServer({"--echo"});
  Fd c = TcpConnect(Ip("127.0.0.1", tcp));
  ASSERT_TRUE(WriteAll(c.get(), "x"));
  ASSERT_EQ(ReadExactly(c.get(), 1), "x");
  Http h = Get(agent_->metrics_url());
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_THAT(h.content_type, HasSubstr("text/plain; version=0.0.4"));
  CommandResult r = RunCommand({"promtool", "check", "metrics"}, h.body);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out + r.err, "") << h.body;
  EXPECT_THAT(h.body, HasSubstr("sockagent_build_info{version=\""));
  // Cardinality: no series names a server or connection (this server did
  // not ask for per-server series).
  EXPECT_THAT(h.body, Not(HasSubstr("srv-")));
  EXPECT_THAT(h.body, Not(HasSubstr("conn-")));
}

// Per-server series only for the servers that ask (StartServer.metrics):
// the one that asked has its own counters, the other adds no series; and
// promtool finds nothing to lint in them.
TEST_F(Metrics, OnlyServersThatAskHavePerServerSeries) {
  Start();
  const uint16_t asked = StartServer({"--echo", "--metrics", "--name", "web"});
  const uint16_t quiet = StartServer({"--echo"});
  for (uint16_t port : {asked, quiet}) {
    Fd c = TcpConnect(Ip("127.0.0.1", port));
    ASSERT_TRUE(WriteAll(c.get(), "0123456789"));
    ASSERT_EQ(ReadExactly(c.get(), 10), "0123456789");
  }
  Http h;
  ASSERT_TRUE(WaitFor(
      [&] {
        h = Get(agent_->metrics_url());
        return absl::StrContains(
            h.body,
            "sockagent_server_sent_bytes_total{server=\"srv-1\",name=\"web\","
            "transport=\"tcp\"} 10\n");
      },
      absl::Seconds(20)))
      << h.body;
  EXPECT_THAT(h.body, HasSubstr("sockagent_server_accepted_connections_total{"
                                "server=\"srv-1\",name=\"web\",transport="
                                "\"tcp\"} 1\n"));
  EXPECT_THAT(h.body, Not(HasSubstr("srv-2")));
  CommandResult r = RunCommand({"promtool", "check", "metrics"}, h.body);
  EXPECT_EQ(r.out + r.err, "") << h.body;
}

TEST_F(Metrics, OpenMetricsWhenTheScraperAsks) {
  Start();
  Http h = Get(agent_->metrics_url(),
               {"Accept: application/openmetrics-text; version=1.0.0"});
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_THAT(h.content_type, HasSubstr("application/openmetrics-text"));
  EXPECT_TRUE(absl::EndsWith(h.body, "# EOF\n")) << h.body;
  EXPECT_THAT(h.body, HasSubstr("# TYPE sockagent_received_bytes counter\n"));
}

TEST_F(Metrics, OnlyGetOfSlashMetricsIsServed) {
  Start();
  const std::string base =
      agent_->metrics_url().substr(0, agent_->metrics_url().rfind('/'));
  EXPECT_EQ(Get(base + "/").status, 404);
  EXPECT_EQ(Get(base + "/metrics/x").status, 404);
  EXPECT_EQ(Get(agent_->metrics_url(), {}, {"-X", "POST", "-d", "x"}).status,
            405);
}

TEST_F(Metrics, TheMetricsTokenIsRequiredWhenConfigured) {
  const std::string token_file = dir_.path() + "/metrics-token";
  std::ofstream(token_file) << kMetricsToken << "\n";
  chmod(token_file.c_str(), 0600);
  Start({"--metrics-token-file=" + token_file});
  const std::string url = agent_->metrics_url();
  Http none = Get(url);
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_THAT(none.body, Not(HasSubstr("sockagent_")));
  EXPECT_EQ(Get(url, {"Authorization: Bearer wrong-token-0123456789"}).status,
            401);
  // The control token is not the metrics token.
  EXPECT_EQ(
      Get(url, {std::string("Authorization: Bearer ") + kControlToken}).status,
      401);
  Http ok = Get(url, {std::string("Authorization: Bearer ") + kMetricsToken});
  EXPECT_EQ(ok.status, 200);
  EXPECT_THAT(ok.body, HasSubstr("sockagent_build_info"));

  // Prometheus with the token file scrapes it.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(url, m, std::regex(R"(//([^/]+)/metrics)")));
  auto prom = Prometheus::Start(dir_.path(), m[1], token_file);
  ASSERT_NE(prom, nullptr) << "prometheus did not start";
  EXPECT_EQ(prom->WaitForValue("up{job=\"sockagent\"}", 1), 1);
}

TEST_F(Metrics, HttpsWithMetricsTlsFlags) {
  const std::string d = dir_.path();
  ASSERT_EQ(RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-keyout", d + "/m.key", "-out", d + "/m.crt",
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"})
                .exit_code,
            0);
  Start({"--metrics-tls-cert=" + d + "/m.crt",
         "--metrics-tls-key=" + d + "/m.key"});
  const std::string url = agent_->metrics_url();
  ASSERT_TRUE(absl::StartsWith(url, "https://127.0.0.1:")) << url;
  Http ok = Get(url, {}, {"--cacert", d + "/m.crt"});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_THAT(ok.body, HasSubstr("sockagent_build_info"));
  // Plain HTTP on the TLS port gets nothing.
  std::string plain = url;
  plain.replace(0, 5, "http");
  EXPECT_NE(Get(plain).status, 200);
}

// Each bad --metrics-* value: sockagentd exits non-zero at once, naming the
// flag, and serves nothing.
TEST(MetricsFlags, BadValuesRefuseToStart) {
  TempDir dir;
  const std::string token = dir.path() + "/short";
  std::ofstream(token) << "short\n";
  uint16_t busy_port = 0;
  Fd busy = TcpListen(1, &busy_port);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--metrics-listen=nonsense"}, "--metrics-listen"},
      {{"--metrics-listen=unix:/tmp/m.sock"}, "TCP only"},
      {{"--metrics-listen=example.com:9464"}, "--metrics-listen"},
      {{"--metrics-listen=127.0.0.1:99999"}, "--metrics-listen"},
      {{absl::StrCat("--metrics-listen=127.0.0.1:", busy_port)},
       "--metrics-listen"},
      {{"--metrics-token-file=" + token}, "without --metrics-listen"},
      {{"--metrics-listen=127.0.0.1:0", "--metrics-token-file=" + token},
       "--metrics-token-file"},
      {{"--metrics-listen=127.0.0.1:0",
        "--metrics-token-file=" + dir.path() + "/missing"},
       "--metrics-token-file"},
      {{"--metrics-listen=127.0.0.1:0", "--metrics-tls-cert=/nonexistent"},
       "go together"},
      {{"--metrics-listen=127.0.0.1:0", "--metrics-tls-cert=/nonexistent",
        "--metrics-tls-key=/nonexistent"},
       "metrics-tls-cert"},
  };
  for (const auto& [flags, words] : cases) {
    std::vector<std::string> argv = {SOCKAGENTD_PATH, "--listen=127.0.0.1:0",
                                     "--insecure"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    CommandResult r = RunCommand(argv, "", absl::Seconds(20));
    EXPECT_NE(r.exit_code, 0) << flags[0];
    EXPECT_FALSE(r.timed_out) << flags[0];
    EXPECT_THAT(r.err, HasSubstr(words)) << flags[0];
    EXPECT_THAT(r.out, Not(HasSubstr("serving on"))) << flags[0];
  }
}

}  // namespace
}  // namespace sockagent::testing
