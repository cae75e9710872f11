// Helpers for the control-port attack tests (flood_test.cc,
// open_streams_test.cc): the agent's RSS and its peak, its port, a "does it
// still answer" check, and TLS certificates made with openssl.
#ifndef SOCKAGENT_TESTS_HOSTILE_CONTROL_SUPPORT_H_
#define SOCKAGENT_TESTS_HOSTILE_CONTROL_SUPPORT_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {

// The resident set size of `pid` in bytes; 0 when it cannot be read.
inline uint64_t RssBytes(pid_t pid) {
  const int64_t bytes = ProcessRssBytes(pid);
  return bytes < 0 ? 0 : static_cast<uint64_t>(bytes);
}

// Samples a process's RSS on its own thread, every 20 ms, from construction
// until Stop(): the highest value seen (at least `start`).
//   PeakRss peak(pid, RssBytes(pid));
//   ...attack...
//   const uint64_t highest = peak.Stop();
class PeakRss {
 public:
  PeakRss(pid_t pid, uint64_t start)
      : pid_(pid), peak_(start), thread_([this] { Run(); }) {}
  ~PeakRss() { Stop(); }
  PeakRss(const PeakRss&) = delete;
  PeakRss& operator=(const PeakRss&) = delete;

  uint64_t Stop() {
    if (!done_.exchange(true)) thread_.join();
    return peak_.load();
  }

 private:
  void Run() {
    while (!done_.load()) {
      const uint64_t rss = RssBytes(pid_);
      if (rss > peak_.load()) peak_.store(rss);
      absl::SleepFor(absl::Milliseconds(20));  // A sampling period.
    }
  }

  const pid_t pid_;
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> peak_;
  std::thread thread_;  // Last: starts once the rest is set.
};

inline int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port));
  return port;
}

// One health check and one authenticated call (ListServers with `token`)
// on `channel`, each within `limit`.
inline ::testing::AssertionResult AgentAnswers(
    const std::shared_ptr<grpc::Channel>& channel, absl::Duration limit,
    const std::string& token) {
  const auto deadline =
      std::chrono::milliseconds(absl::ToInt64Milliseconds(limit));
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  auto hctx = ContextWithDeadline(deadline);
  grpc::Status s = health->Check(hctx.get(), hreq, &hresp);
  if (!s.ok()) {
    return ::testing::AssertionFailure()
           << "health: " << s.error_code() << " " << s.error_message();
  }
  auto agent = sockagent::v1::SocketAgent::NewStub(channel);
  sockagent::v1::ListServersRequest req;
  sockagent::v1::ListServersResponse resp;
  auto ctx = ContextWithDeadline(deadline);
  if (!token.empty()) AddBearerToken(ctx.get(), token);
  s = agent->ListServers(ctx.get(), req, &resp);
  if (!s.ok()) {
    return ::testing::AssertionFailure()
           << "ListServers: " << s.error_code() << " " << s.error_message();
  }
  return ::testing::AssertionSuccess();
}

// A CA and a server certificate for localhost/127.0.0.1 signed by it, and a
// client certificate (mutual TLS), in a temporary directory.
class TestCerts {
 public:
  absl::Status Make() {
    const std::string d = dir_.path();
    auto run = [&](std::vector<std::string> argv) -> absl::Status {
      CommandResult r = RunCommand(argv, "", absl::Seconds(60));
      if (r.exit_code != 0) {
        return absl::InternalError(
            absl::StrCat(argv[0], " ", argv[1], ": ", r.err));
      }
      return absl::OkStatus();
    };
    auto key = [&](const std::string& name) {
      return run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-out", Path(name + ".key")});
    };
    auto leaf = [&](const std::string& name,
                    const std::string& ext) -> absl::Status {
      if (auto s = key(name); !s.ok()) return s;
      if (auto s = run({"openssl", "req", "-new", "-key", Path(name + ".key"),
                        "-out", Path(name + ".csr"), "-subj", "/CN=" + name});
          !s.ok()) {
        return s;
      }
      std::ofstream(Path(name + ".ext")) << ext;
      return run({"openssl", "x509", "-req", "-in", Path(name + ".csr"), "-CA",
                  Path("ca.crt"), "-CAkey", Path("ca.key"), "-CAcreateserial",
                  "-out", Path(name + ".crt"), "-days", "1", "-extfile",
                  Path(name + ".ext")});
    };
    if (auto s = key("ca"); !s.ok()) return s;
    if (auto s = run({"openssl", "req", "-x509", "-new", "-key", Path("ca.key"),
                      "-out", Path("ca.crt"), "-days", "1", "-subj", "/CN=ca"});
        !s.ok()) {
      return s;
    }
    if (auto s = leaf("server",
                      "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                      "extendedKeyUsage=serverAuth\n");
        !s.ok()) {
      return s;
    }
    return leaf("client", "extendedKeyUsage=clientAuth\n");
  }
  std::string Path(const std::string& file) const {
    return dir_.path() + "/" + file;
  }
  std::string Pem(const std::string& file) const {
    std::ifstream in(Path(file));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // sockagentd flags serving TLS with these certificates.
  std::vector<std::string> ServerFlags(bool mutual) const {
    std::vector<std::string> flags = {"--tls-cert=" + Path("server.crt"),
                                      "--tls-key=" + Path("server.key")};
    if (mutual) flags.push_back("--tls-client-ca=" + Path("ca.crt"));
    return flags;
  }

 private:
  TempDir dir_;
};

#define SKIP_WITHOUT_RELEASE_AGENT()                                       \
  if (ReleaseAgentPath().empty()) {                                        \
    if (ReleaseAgentRequired()) FAIL() << "SOCKAGENTD_RELEASE is not set"; \
    GTEST_SKIP()                                                           \
        << "RSS needs a RelWithDebInfo agent: set SOCKAGENTD_RELEASE";     \
  }

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_HOSTILE_CONTROL_SUPPORT_H_
