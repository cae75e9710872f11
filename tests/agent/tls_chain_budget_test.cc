// The reported peer chain's budget (agent/tls.h kMaxTlsReportedChainBytes):
// what a hostile peer's certificate list may leave behind per connection.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/tls.h"
#include "agent/tls_cert.h"

namespace sockagent {
namespace {

using ::testing::ElementsAre;
using tls_internal::FitChainToBudget;

TlsCertificateInfo Cert(size_t name_bytes, size_t sans, size_t pem_bytes) {
  TlsCertificateInfo c;
  c.subject = std::string(name_bytes, 's');
  c.issuer = std::string(name_bytes, 'i');
  c.sha256_fingerprint = std::string(95, 'f');
  for (size_t i = 0; i < sans; ++i) {
    c.sans.push_back("DNS:" +
                     std::string(1020, 'a' + static_cast<char>(i % 26)));
  }
  c.pem = std::string(pem_bytes, 'p');
  return c;
}

size_t Bytes(const std::vector<TlsCertificateInfo>& chain) {
  size_t n = 0;
  for (const auto& c : chain) {
    n += c.subject.size() + c.issuer.size() + c.sha256_fingerprint.size() +
         c.pem.size();
    for (const auto& san : c.sans) n += san.size();
  }
  return n;
}

TEST(TlsChainBudget, AnOrdinaryChainIsKeptWhole) {
  std::vector<TlsCertificateInfo> chain = {Cert(60, 2, 900), Cert(60, 0, 800),
                                           Cert(60, 0, 700)};
  const std::vector<TlsCertificateInfo> before = chain;
  FitChainToBudget(&chain, kMaxTlsReportedChainBytes);
  ASSERT_EQ(chain.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(chain[i].pem, before[i].pem);
    EXPECT_EQ(chain[i].sans, before[i].sans);
  }
}

TEST(TlsChainBudget, PemGoesFirstThenSansThenLaterCertificates) {
  // A leaf whose PEM alone is over the budget: its PEM goes, names stay.
  std::vector<TlsCertificateInfo> chain = {Cert(100, 1, 20'000)};
  FitChainToBudget(&chain, 16 * 1024);
  ASSERT_EQ(chain.size(), 1u);
  EXPECT_TRUE(chain[0].pem.empty());
  EXPECT_EQ(chain[0].sans.size(), 1u);

  // 64 SANs of 1 KiB each: as many as fit, then one line saying how many
  // were not kept.
  chain = {Cert(100, 64, 1000)};
  FitChainToBudget(&chain, 16 * 1024);
  ASSERT_EQ(chain.size(), 1u);
  EXPECT_TRUE(chain[0].pem.empty());
  EXPECT_LT(chain[0].sans.size(), 64u);
  EXPECT_THAT(chain[0].sans.back(),
              ::testing::MatchesRegex("\\.\\.\\.[0-9]+ more SANs not kept"));
  EXPECT_LE(Bytes(chain), 16u * 1024 + 64);

  // Ten certificates of 4 KiB names each: the leaf and what fits after it.
  chain.assign(10, Cert(4096, 0, 2000));
  FitChainToBudget(&chain, 16 * 1024);
  EXPECT_GE(chain.size(), 1u);
  EXPECT_LT(chain.size(), 10u);
  EXPECT_LE(Bytes(chain), 16u * 1024);
}

TEST(TlsChainBudget, TheWorstPeerIsBounded) {
  // What Describe can make of a hostile 64 KiB list: ten certificates, each
  // with 4 KiB names (1,024 escaped bytes) and 64 SANs of 4 KiB.
  std::vector<TlsCertificateInfo> chain(10, Cert(4096, 64, 90'000));
  for (auto& c : chain) {
    for (auto& san : c.sans) san.resize(4096, 'x');
  }
  FitChainToBudget(&chain, kMaxTlsReportedChainBytes);
  EXPECT_LE(Bytes(chain), kMaxTlsReportedChainBytes + 64);
  ASSERT_FALSE(chain.empty());
  EXPECT_EQ(chain[0].subject.size(), 4096u);  // The leaf's names stay.
}

TEST(TlsChainBudget, EmptyChainStaysEmpty) {
  std::vector<TlsCertificateInfo> chain;
  FitChainToBudget(&chain, kMaxTlsReportedChainBytes);
  EXPECT_THAT(chain, ElementsAre());
}

}  // namespace
}  // namespace sockagent
