// The per-run CA of `sockctl matrix --tls`, checked by an independent peer:
// Debian's `openssl verify` and `openssl x509` read what RunCa wrote.
#include "cli/matrix_ca.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"

namespace sockctl {
namespace {

using sockagent::testing::CommandResult;
using sockagent::testing::RunCommand;
using sockagent::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

class RunCaTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // `openssl verify` of `leaf` against `ca` for a TLS server; `check` is
  // e.g. {"-verify_ip", "127.0.0.1"}.
  CommandResult Verify(const std::string& ca, const std::string& leaf,
                       std::vector<std::string> check) {
    std::vector<std::string> argv = {"openssl", "verify",   "-CAfile",
                                     ca,        "-purpose", "sslserver"};
    argv.insert(argv.end(), check.begin(), check.end());
    argv.push_back(leaf);
    return RunCommand(argv);
  }
  TempDir dir_;
};

TEST_F(RunCaTest, AgentCertificatesVerifyAgainstTheRunCaOnly) {
  absl::StatusOr<RunCa> ca = RunCa::Create("1a2b3c4d");
  absl::StatusOr<RunCa> other = RunCa::Create("5e6f7a8b");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<IssuedCert> a = ca->Issue("agent-a", {"127.0.0.1"});
  absl::StatusOr<IssuedCert> b = ca->Issue("agent-b", {"agent-b.test"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const std::string ca_pem = Write("ca.pem", ca->certificate_pem());
  const std::string other_pem = Write("other.pem", other->certificate_pem());
  const std::string a_pem = Write("a.pem", a->certificate_pem);
  const std::string b_pem = Write("b.pem", b->certificate_pem);

  CommandResult ok = Verify(ca_pem, a_pem, {"-verify_ip", "127.0.0.1"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  ok = Verify(ca_pem, b_pem, {"-verify_hostname", "agent-b.test"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  // Another run's CA, another address, another name: refused.
  EXPECT_NE(Verify(other_pem, a_pem, {"-verify_ip", "127.0.0.1"}).exit_code, 0);
  EXPECT_NE(Verify(ca_pem, a_pem, {"-verify_ip", "127.0.0.2"}).exit_code, 0);
  EXPECT_NE(
      Verify(ca_pem, b_pem, {"-verify_hostname", "agent-c.test"}).exit_code, 0);
  // Also good for client authentication (--mtls).
  CommandResult client = RunCommand(
      {"openssl", "verify", "-CAfile", ca_pem, "-purpose", "sslclient", a_pem});
  EXPECT_EQ(client.exit_code, 0) << client.out << client.err;
}

TEST_F(RunCaTest, CertificateNamesTheAgentAndItsHostAndMatchesItsKey) {
  absl::StatusOr<RunCa> ca = RunCa::Create("1a2b3c4d");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<IssuedCert> a = ca->Issue("agent-a", {"::1"});
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string cert = Write("a.pem", a->certificate_pem);
  const std::string key = Write("a.key", a->private_key_pem);
  CommandResult text =
      RunCommand({"openssl", "x509", "-in", cert, "-noout", "-subject",
                  "-issuer", "-ext", "subjectAltName,basicConstraints"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("CN = agent-a"));
  EXPECT_THAT(text.out, HasSubstr("CN = sockctl matrix CA 1a2b3c4d"));
  EXPECT_THAT(text.out, HasSubstr("IP Address:0:0:0:0:0:0:0:1"));
  EXPECT_THAT(text.out, HasSubstr("CA:FALSE"));
  CommandResult cert_pub =
      RunCommand({"openssl", "x509", "-in", cert, "-noout", "-pubkey"});
  CommandResult key_pub =
      RunCommand({"openssl", "pkey", "-in", key, "-pubout"});
  ASSERT_EQ(cert_pub.exit_code, 0) << cert_pub.err;
  EXPECT_EQ(cert_pub.out, key_pub.out);
  EXPECT_THAT(a->private_key_pem, HasSubstr("PRIVATE KEY"));
  EXPECT_THAT(ca->certificate_pem(), Not(HasSubstr("PRIVATE")));
  // The chain carries the CA after the leaf.
  EXPECT_THAT(a->certificate_pem, HasSubstr(ca->certificate_pem()));
}

TEST(RunCa, AHostIsRequired) {
  absl::StatusOr<RunCa> ca = RunCa::Create("1a2b3c4d");
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(ca->Issue("agent-a", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sockctl
