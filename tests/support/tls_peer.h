// Independent TLS peers for tests: a test PKI made at test time by Debian's
// `openssl` (a CA, a leaf for localhost/127.0.0.1, a client certificate, an
// expired leaf, a second CA nobody trusts; no key is committed), and a TLS
// echo server in Python's ssl module (tests/support/tls_echo.py).
//
//   Pki pki;
//   TlsEchoPeer echo(pki.Path("leaf.pem"), pki.Path("leaf.key"));
//   ... dial 127.0.0.1:echo.port(), trust pki.Pem("ca.pem") ...
#ifndef SOCKAGENT_TESTS_SUPPORT_TLS_PEER_H_
#define SOCKAGENT_TESTS_SUPPORT_TLS_PEER_H_

#include <signal.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/agent_process.h"
#include "tests/support/files.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {

// The test PKI, made once per test by openssl, in a temporary directory.
class Pki {
 public:
  Pki() {
    const std::string d = dir_.path();
    WriteFile(d + "/leaf.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    WriteFile(d + "/client.ext", "extendedKeyUsage=clientAuth\n");
    Run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/ca.key", "-out",
         d + "/ca.pem", "-days", "2", "-subj", "/CN=sockagent test CA"});
    Run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/other.key",
         "-out", d + "/other.pem", "-days", "2", "-subj", "/CN=other CA"});
    Issue("leaf", "/CN=localhost", "leaf.ext", "2");
    Issue("expired", "/CN=localhost", "leaf.ext", "-1");
    Issue("client", "/CN=test client", "client.ext", "2");
    // SAN types that hold no string (otherName, dirName) beside a DNS name.
    // 1.3.6.1.4.1.311.20.2.3 is an OID (Microsoft's UPN), not an address.
    WriteFile(d + "/odd.ext",
              "subjectAltName=DNS:localhost,"
              "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:user@example.test,"
              "dirName:dir_sect\n[dir_sect]\nCN=dir\n");
    Issue("odd", "/CN=localhost", "odd.ext", "2");
  }
  std::string Path(const std::string& name) const {
    return dir_.path() + "/" + name;
  }
  std::string Pem(const std::string& name) const {
    return ReadFile(Path(name));
  }

 private:
  void Run(const std::vector<std::string>& argv) {
    CommandResult r = RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << argv[1] << ": " << r.err;
  }
  void Issue(const std::string& name, const std::string& subject,
             const std::string& ext, const std::string& days) {
    const std::string d = dir_.path();
    Run({"openssl", "req", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         d + "/" + name + ".key", "-out", d + "/" + name + ".csr", "-subj",
         subject});
    Run({"openssl", "x509", "-req", "-in", d + "/" + name + ".csr", "-CA",
         d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial", "-out",
         d + "/" + name + ".pem", "-days", days, "-extfile", d + "/" + ext});
  }
  TempDir dir_;
};

// tests/support/tls_echo.py on `host`, port 0: a TLS server presenting
// `cert` that echoes every byte, any number of connections at once.
class TlsEchoPeer {
 public:
  TlsEchoPeer(const std::string& cert, const std::string& key,
              const std::string& host = "127.0.0.1") {
    auto child = ChildProcess::Start(
        {"/usr/bin/python3",
         std::string(SOCKAGENT_SOURCE_DIR) + "/tests/support/tls_echo.py", cert,
         key, host});
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return;
    child_ = *std::move(child);
    auto line = child_->ReadLine(absl::Now() + absl::Seconds(20));
    uint32_t port = 0;
    if (!line.ok() || !absl::SimpleAtoi(*line, &port) || port == 0 ||
        port > 65535) {
      ADD_FAILURE() << "tls_echo.py: "
                    << (line.ok() ? *line : line.status().ToString()) << " "
                    << child_->DrainStderr();
      return;
    }
    port_ = static_cast<uint16_t>(port);
  }
  ~TlsEchoPeer() {
    if (child_ != nullptr) {
      (void)child_->Stop(SIGTERM, absl::Now() + absl::Seconds(10));
    }
  }
  uint16_t port() const { return port_; }

 private:
  std::unique_ptr<ChildProcess> child_;
  uint16_t port_ = 0;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_TLS_PEER_H_
