// The connectivity matrix's pure parts: how an agent's probe class becomes
// a cell, the expectation file and its matcher, and the cells, tables,
// difference lines and JSON that report a run.
#include "cli/matrix.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/matrix_probe.h"
#include "cli/output.h"

namespace sockctl {
namespace {

using ::testing::HasSubstr;
using Kind = ExpectedResult::Kind;

constexpr ProbeTransport kTcp = ProbeTransport::kTcp;
constexpr ProbeTransport kUdp = ProbeTransport::kUdp;

TEST(ResultFromApi, EveryProbeClassOfTheAgentHasItsCell) {
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_OK), ProbeResult::kOk);
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_REFUSED),
            ProbeResult::kRefused);
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_TIMEOUT),
            ProbeResult::kTimeout);
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_UNREACHABLE),
            ProbeResult::kUnreachable);
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_DNS), ProbeResult::kDns);
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_TLS), ProbeResult::kTls);
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_ERROR),
            ProbeResult::kError);
  // A class from a newer agent, or none, is an error, not OK.
  EXPECT_EQ(ResultFromApi(sockagent::v1::PROBE_RESULT_UNSPECIFIED),
            ProbeResult::kError);
  EXPECT_EQ(ResultFromApi(static_cast<sockagent::v1::ProbeResult>(99)),
            ProbeResult::kError);
}

TEST(CellText, AFailedHandshakeShowsItsClassInTheCell) {
  // The agent's words for a TLS probe that failed (agent/prober.cc, in the
  // words of agent/tls_stage.cc). The addresses are text: nothing is
  // dialled.
  const struct {
    const char* message;
    const char* cell;
  } cases[] = {
      {"TLS handshake failed: certificate verify failed: unable to get "
       "local issuer certificate",
       "TLS: unknown CA"},
      {"TLS handshake failed: certificate verify failed: IP address mismatch",
       "TLS: wrong name"},
      {"TLS handshake failed: certificate verify failed: certificate has "
       "expired",
       "TLS: expired certificate"},
      {"TLS handshake failed: wrong version number", "TLS: not TLS"},
      {"TLS handshake failed: unexpected message", "TLS: not TLS"},
      {"TLS handshake failed: handshake timed out", "TLS: handshake timed out"},
      {"closed during the TLS handshake", "TLS: closed during the handshake"},
      {"TLS handshake failed: sslv3 alert some brand new words nobody has "
       "classified yet at all",
       "TLS: sslv3 alert some brand new words nobody has c..."},
  };
  for (const auto& c : cases) {
    MatrixCell cell;
    cell.result = ProbeResult::kTls;
    cell.message = c.message;
    EXPECT_EQ(CellText(cell), c.cell) << c.message;
  }
  EXPECT_EQ(ParseResultName("tls"), ProbeResult::kTls);
  EXPECT_EQ(ResultName(ProbeResult::kTls), "TLS");
}

TEST(ResultName, RoundTripsIgnoringCase) {
  for (ProbeResult r :
       {ProbeResult::kOk, ProbeResult::kRefused, ProbeResult::kTimeout,
        ProbeResult::kUnreachable, ProbeResult::kDns, ProbeResult::kError}) {
    EXPECT_EQ(ParseResultName(ResultName(r)), r);
  }
  EXPECT_EQ(ParseResultName("timeout"), ProbeResult::kTimeout);
  EXPECT_EQ(ParseResultName("FAIL"), std::nullopt);
}

TEST(ParseExpectations, RulesWildcardsAndComments) {
  absl::StatusOr<std::vector<Expectation>> r = ParseExpectations(
      "# SRC DST TRANSPORT RESULT\n"
      "*  *  *  OK\n"
      "\n"
      "web-1 db-1 UDP timeout   # dropped\n"
      "* db-1 tcp FAIL\n"
      "lb * * *\n");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].src, "*");
  EXPECT_EQ((*r)[0].line, 2);
  EXPECT_EQ((*r)[1].transport, "udp");
  EXPECT_EQ((*r)[1].expected.kind, Kind::kExactly);
  EXPECT_EQ((*r)[1].expected.result, ProbeResult::kTimeout);
  EXPECT_EQ((*r)[1].line, 4);
  EXPECT_EQ((*r)[2].expected.kind, Kind::kAnyFailure);
  EXPECT_EQ((*r)[3].expected.kind, Kind::kAnything);
}

TEST(ParseExpectations, MalformedLinesNameTheirLineNumber) {
  auto error = [](absl::string_view text) {
    absl::StatusOr<std::vector<Expectation>> r = ParseExpectations(text);
    EXPECT_FALSE(r.ok()) << text;
    return std::string(r.status().message());
  };
  EXPECT_THAT(error("a b tcp OK\na b tcp\n"),
              HasSubstr("line 2: expected SRC DST TRANSPORT RESULT, got 3"));
  EXPECT_THAT(error("a b tcp OK extra\n"), HasSubstr("line 1:"));
  EXPECT_THAT(error("a b sctp OK\n"), HasSubstr("line 1: unknown transport"));
  EXPECT_THAT(error("\n\na b tcp LOST\n"), HasSubstr("line 3: unknown result"));
  EXPECT_TRUE(ParseExpectations("").ok());  // Everything expects OK.
}

TEST(CheckExpectationNames, UnknownAgentIsATypo) {
  absl::StatusOr<std::vector<Expectation>> r =
      ParseExpectations("* * * OK\nweb-1 db-9 tcp OK\n");
  ASSERT_TRUE(r.ok());
  absl::Status s = CheckExpectationNames(*r, {"web-1", "db-1"});
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("line 2: no agent is named 'db-9'"));
  EXPECT_TRUE(CheckExpectationNames(*r, {"web-1", "db-9"}).ok());
}

TEST(Expected, LastMatchingRuleWinsAndMissingCellsExpectOk) {
  absl::StatusOr<std::vector<Expectation>> r = ParseExpectations(
      "* db * TIMEOUT\n"
      "web db udp REFUSED\n"
      "* * udp *\n"
      "lb db * OK\n");
  ASSERT_TRUE(r.ok());
  auto name = [&](const char* src, const char* dst, ProbeTransport t) {
    return Expected(*r, src, dst, t).Name();
  };
  EXPECT_EQ(name("web", "db", kTcp), "TIMEOUT");
  EXPECT_EQ(name("web", "db", kUdp), "*");  // Line 3 overrides line 2.
  EXPECT_EQ(name("lb", "db", kUdp), "OK");
  EXPECT_EQ(name("web", "lb", kTcp), "OK");  // No rule: OK.
  EXPECT_EQ(Expected({}, "a", "b", kTcp).Name(), "OK");
}

TEST(ExpectedResult, AcceptsExactlyAnyFailureOrAnything) {
  ExpectedResult ok;
  EXPECT_TRUE(ok.Accepts(ProbeResult::kOk));
  EXPECT_FALSE(ok.Accepts(ProbeResult::kTimeout));
  ExpectedResult fail{Kind::kAnyFailure};
  EXPECT_FALSE(fail.Accepts(ProbeResult::kOk));
  EXPECT_TRUE(fail.Accepts(ProbeResult::kRefused));
  EXPECT_TRUE(fail.Accepts(ProbeResult::kError));
  ExpectedResult any{Kind::kAnything};
  EXPECT_TRUE(any.Accepts(ProbeResult::kOk));
  EXPECT_TRUE(any.Accepts(ProbeResult::kDns));
  ExpectedResult refused{Kind::kExactly, ProbeResult::kRefused};
  EXPECT_TRUE(refused.Accepts(ProbeResult::kRefused));
  EXPECT_FALSE(refused.Accepts(ProbeResult::kTimeout));
}

TEST(ParseTargetHosts, NameEqualsHost) {
  auto r = ParseTargetHosts({"db=10.1.0.5", "v6=[fd00::5]", "bare=fd00::6"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["db"], "10.1.0.5");
  EXPECT_EQ((*r)["v6"], "fd00::5");
  EXPECT_EQ((*r)["bare"], "fd00::6");
  EXPECT_FALSE(ParseTargetHosts({"db"}).ok());
  EXPECT_FALSE(ParseTargetHosts({"=10.0.0.1"}).ok());
  EXPECT_FALSE(ParseTargetHosts({"db="}).ok());
  EXPECT_FALSE(ParseTargetHosts({"db=a", "db=b"}).ok());
}

TEST(ProbePayload, NamesRunPairTransportAndAttempt) {
  EXPECT_EQ(ProbePayload("1a2b", "web", "db", kUdp, 3),
            "sockctl-probe 1a2b web->db udp 3\n");
}

TEST(FormatRtt, ReadableAtAGlance) {
  EXPECT_EQ(FormatRtt(absl::Microseconds(87)), "87us");
  EXPECT_EQ(FormatRtt(absl::Microseconds(412)), "0.4ms");
  EXPECT_EQ(FormatRtt(absl::Microseconds(3140)), "3.1ms");
  EXPECT_EQ(FormatRtt(absl::Milliseconds(12)), "12ms");
  EXPECT_EQ(FormatRtt(absl::Milliseconds(1300)), "1.3s");
}

std::vector<MatrixCell> SampleCells() {
  MatrixCell ab;
  ab.src = 0;
  ab.dst = 1;
  ab.result = ProbeResult::kOk;
  ab.rtt = absl::Microseconds(412);
  ab.attempts = 1;
  MatrixCell ba;
  ba.src = 1;
  ba.dst = 0;
  ba.result = ProbeResult::kTimeout;
  ba.message = "no echo within 1s";
  ba.attempts = 2;
  return {ab, ba};
}

TEST(PrintMatrixTable, RowsAreSourcesColumnsDestinations) {
  std::ostringstream out;
  PrintMatrixTable(out, {"a", "b"}, kTcp, SampleCells());
  EXPECT_EQ(out.str(),
            "tcp\n"
            "SRC\\DST  a        b\n"
            "a        -        OK 0.4ms\n"
            "b        TIMEOUT  -\n");
}

TEST(DifferenceLine, ExpectedThenGotThenWhyWhenAsked) {
  const std::vector<MatrixCell> cells = SampleCells();
  EXPECT_EQ(DifferenceLine({"a", "b"}, cells[1], ExpectedResult(), false),
            "b -> a tcp: expected OK, got TIMEOUT");
  EXPECT_EQ(DifferenceLine({"a", "b"}, cells[1], ExpectedResult(), true),
            "b -> a tcp: expected OK, got TIMEOUT: no echo within 1s");
}

// Printed by the protobuf JSON printer: lowerCamelCase keys, the round trip
// as a Duration (only for OK cells), like every API response.
TEST(MatrixReport, OneObjectWithEveryCellInProtobufJson) {
  std::string json;
  ASSERT_TRUE(FormatJson(
      MatrixReport("run1", {"a", "b"}, {kTcp}, SampleCells(),
                   {ExpectedResult(), ExpectedResult{Kind::kAnyFailure}}, true),
      &json));
  EXPECT_EQ(
      json,
      "{\"run\":\"run1\",\"agents\":[\"a\",\"b\"],\"transports\":[\"tcp\"],"
      "\"asExpected\":true,\"cells\":["
      "{\"src\":\"a\",\"dst\":\"b\",\"transport\":\"tcp\",\"result\":\"OK\","
      "\"message\":\"\",\"expected\":\"OK\",\"attempts\":1,"
      "\"rtt\":\"0.000412s\"},"
      "{\"src\":\"b\",\"dst\":\"a\",\"transport\":\"tcp\",\"result\":"
      "\"TIMEOUT\",\"message\":\"no echo within 1s\","
      "\"expected\":\"FAIL\",\"attempts\":2}]}");
}

}  // namespace
}  // namespace sockctl
