// ValidateClientSpec (agent/client_spec.h): the checks a client spec passes
// before any socket or lookup, each refusal naming what is wrong.
#include "agent/client_spec.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sockagent {
namespace {

using ::testing::HasSubstr;

ClientSpec Tcp(std::string host, std::string port) {
  ClientSpec spec;
  spec.remote.host = std::move(host);
  spec.remote.port = std::move(port);
  return spec;
}

void ExpectInvalid(const ClientSpec& spec, const std::string& words) {
  absl::Status s = ValidateClientSpec(spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(words));
}

TEST(ValidateClientSpec, AcceptsPlainTcpUdpAndUnixSpecs) {
  EXPECT_TRUE(ValidateClientSpec(Tcp("127.0.0.1", "80")).ok());
  EXPECT_TRUE(ValidateClientSpec(Tcp("::1", "http")).ok());
  ClientSpec udp = Tcp("localhost", "53");
  udp.transport = Transport::kUdp;
  udp.source.host = "127.0.0.1";
  udp.source.port = "0";
  EXPECT_TRUE(ValidateClientSpec(udp).ok());
  ClientSpec unix_spec;
  unix_spec.transport = Transport::kUnix;
  unix_spec.remote.unix_path = "/run/x.sock";
  EXPECT_TRUE(ValidateClientSpec(unix_spec).ok());
}

TEST(ValidateClientSpec, RefusesNegativeDurationsByName) {
  ClientSpec spec = Tcp("127.0.0.1", "80");
  spec.idle_timeout = absl::Seconds(-1);
  ExpectInvalid(spec, "idle_timeout is negative");
  spec = Tcp("127.0.0.1", "80");
  spec.keepalive_interval = absl::Milliseconds(-5);
  ExpectInvalid(spec, "keepalive interval is negative");
}

TEST(ValidateClientSpec, RefusesMixedUnixAndIpFields) {
  ClientSpec spec;
  spec.transport = Transport::kUnix;
  spec.remote.unix_path = "/run/x.sock";
  spec.remote.port = "80";
  ExpectInvalid(spec, "takes unix_path only");
  spec.remote.port.clear();
  spec.tcp_nodelay = true;
  ExpectInvalid(spec, "for TCP clients");
  ClientSpec ip = Tcp("127.0.0.1", "80");
  ip.remote.unix_path = "/run/x.sock";
  ExpectInvalid(ip, "unix_path is for UNIX clients only");
  ip = Tcp("127.0.0.1", "80");
  ip.family = Family::kUnix;
  ExpectInvalid(ip, "family UNIX needs transport UNIX");
}

TEST(ValidateClientSpec, RefusesBadPortsAndSources) {
  ExpectInvalid(Tcp("", "80"), "remote host is empty");
  ExpectInvalid(Tcp("127.0.0.1", "0"), "remote port 0");
  ClientSpec spec = Tcp("127.0.0.1", "80");
  spec.source.host = "example.com";
  ExpectInvalid(spec, "must be a numeric address");
  spec = Tcp("127.0.0.1", "80");
  spec.source.port = "http";
  ExpectInvalid(spec, "must be a number");
  spec = Tcp("127.0.0.1", "80");
  spec.transport = Transport::kUdp;
  spec.keepalive = true;
  ExpectInvalid(spec, "for TCP clients");
}

}  // namespace
}  // namespace sockagent
