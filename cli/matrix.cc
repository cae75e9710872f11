#include "cli/matrix.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/inventory.h"
#include "cli/output.h"

namespace sockctl {
namespace {

constexpr char kAny[] = "*";

constexpr struct {
  ProbeResult result;
  const char* name;
} kResultNames[] = {
    {ProbeResult::kOk, "OK"},
    {ProbeResult::kRefused, "REFUSED"},
    {ProbeResult::kTimeout, "TIMEOUT"},
    {ProbeResult::kUnreachable, "UNREACHABLE"},
    {ProbeResult::kDns, "DNS"},
    {ProbeResult::kTls, "TLS"},
    {ProbeResult::kError, "ERROR"},
};

absl::Status LineError(int line, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", why));
}

bool Matches(const std::string& pattern, absl::string_view value) {
  return pattern == kAny || pattern == value;
}

}  // namespace

std::string TransportWord(ProbeTransport transport) {
  return transport == ProbeTransport::kUdp ? "udp" : "tcp";
}

std::string ResultName(ProbeResult result) {
  for (const auto& entry : kResultNames) {
    if (entry.result == result) return entry.name;
  }
  return "ERROR";
}

std::optional<ProbeResult> ParseResultName(absl::string_view name) {
  for (const auto& entry : kResultNames) {
    if (absl::EqualsIgnoreCase(name, entry.name)) return entry.result;
  }
  return std::nullopt;
}

std::string TlsFailureClass(absl::string_view message) {
  constexpr absl::string_view kFailed = "TLS handshake failed: ";
  const size_t at = message.find(kFailed);
  const absl::string_view words = at == absl::string_view::npos
                                      ? message
                                      : message.substr(at + kFailed.size());
  const std::string text = absl::AsciiStrToLower(words);
  // OpenSSL's words (verify errors, alerts, record errors), most specific
  // first.
  constexpr struct {
    const char* words;
    const char* cls;
  } kClasses[] = {
      {"unable to get local issuer certificate", "unknown CA"},
      {"self-signed certificate", "unknown CA"},
      {"self signed certificate", "unknown CA"},
      {"unknown ca", "unknown CA"},
      {"certificate has expired", "expired certificate"},
      {"certificate is not yet valid", "certificate not yet valid"},
      {"hostname mismatch", "wrong name"},
      {"ip address mismatch", "wrong name"},
      {"wrong version number", "not TLS"},
      {"packet length too long", "not TLS"},
      // A plain echo server sends our own ClientHello back.
      {"unexpected message", "not TLS"},
      {"unsupported protocol", "no shared version"},
      {"protocol version", "no shared version"},
      {"no shared cipher", "no shared cipher"},
      {"handshake failure", "handshake failure"},
      {"peer did not return a certificate", "client certificate required"},
      {"certificate required", "client certificate required"},
      {"bad certificate", "certificate refused"},
      {"timed out", "handshake timed out"},
      {"closed during", "closed during the handshake"},
      {"unexpected eof", "closed during the handshake"},
  };
  for (const auto& c : kClasses) {
    if (absl::StrContains(text, c.words)) return c.cls;
  }
  constexpr size_t kMaxWords = 48;
  return words.size() <= kMaxWords
             ? std::string(words)
             : absl::StrCat(words.substr(0, kMaxWords - 3), "...");
}

bool ExpectedResult::Accepts(ProbeResult observed) const {
  switch (kind) {
    case Kind::kAnything:
      return true;
    case Kind::kAnyFailure:
      return observed != ProbeResult::kOk;
    case Kind::kExactly:
      return observed == result;
  }
  return false;
}

std::string ExpectedResult::Name() const {
  switch (kind) {
    case Kind::kAnything:
      return kAny;
    case Kind::kAnyFailure:
      return "FAIL";
    case Kind::kExactly:
      return ResultName(result);
  }
  return "";
}

absl::StatusOr<std::vector<Expectation>> ParseExpectations(
    absl::string_view text) {
  std::vector<Expectation> rules;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    std::vector<absl::string_view> words = ConfigLineWords(line);
    if (words.empty()) continue;
    if (words.size() != 4) {
      return LineError(
          number,
          absl::StrCat("expected SRC DST TRANSPORT RESULT, got ", words.size(),
                       " word", words.size() == 1 ? "" : "s"));
    }
    Expectation rule;
    rule.line = number;
    rule.src = std::string(words[0]);
    rule.dst = std::string(words[1]);
    rule.transport = absl::AsciiStrToLower(words[2]);
    if (rule.transport != "tcp" && rule.transport != "udp" &&
        rule.transport != kAny) {
      return LineError(number, absl::StrCat("unknown transport '", words[2],
                                            "' (expected tcp, udp or *)"));
    }
    const absl::string_view result = words[3];
    if (result == kAny) {
      rule.expected.kind = ExpectedResult::Kind::kAnything;
    } else if (absl::EqualsIgnoreCase(result, "FAIL")) {
      rule.expected.kind = ExpectedResult::Kind::kAnyFailure;
    } else if (std::optional<ProbeResult> r = ParseResultName(result)) {
      rule.expected.result = *r;
    } else {
      return LineError(
          number, absl::StrCat("unknown result '", result,
                               "' (expected OK, REFUSED, TIMEOUT, "
                               "UNREACHABLE, DNS, TLS, ERROR, FAIL or *)"));
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

absl::Status CheckExpectationNames(const std::vector<Expectation>& rules,
                                   const std::vector<std::string>& agents) {
  const std::set<std::string> known(agents.begin(), agents.end());
  for (const Expectation& rule : rules) {
    for (const std::string* name : {&rule.src, &rule.dst}) {
      if (*name != kAny && known.count(*name) == 0) {
        return LineError(rule.line,
                         absl::StrCat("no agent is named '", *name, "'"));
      }
    }
  }
  return absl::OkStatus();
}

ExpectedResult Expected(const std::vector<Expectation>& rules,
                        absl::string_view src, absl::string_view dst,
                        ProbeTransport transport) {
  const std::string word = TransportWord(transport);
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    if (Matches(it->src, src) && Matches(it->dst, dst) &&
        Matches(it->transport, word)) {
      return it->expected;
    }
  }
  return ExpectedResult();
}

absl::StatusOr<std::map<std::string, std::string>> ParseTargetHosts(
    const std::vector<std::string>& words) {
  std::map<std::string, std::string> hosts;
  for (const std::string& word : words) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == word.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --target-host '", word, "': expected NAME=HOST"));
    }
    std::string name = word.substr(0, eq);
    absl::string_view host = absl::string_view(word).substr(eq + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (!hosts.emplace(name, std::string(host)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--target-host names '", name, "' twice"));
    }
  }
  return hosts;
}

std::string ProbePayload(absl::string_view run, absl::string_view src,
                         absl::string_view dst, ProbeTransport transport,
                         int attempt) {
  return absl::StrCat("sockctl-probe ", run, " ", src, "->", dst, " ",
                      TransportWord(transport), " ", attempt, "\n");
}

std::string FormatRtt(absl::Duration rtt) {
  const double us = absl::ToDoubleMicroseconds(rtt);
  if (us < 100) return absl::StrCat(static_cast<int64_t>(std::round(us)), "us");
  const double ms = us / 1000;
  if (ms < 9.95) return absl::StrFormat("%.1fms", ms);
  if (ms < 999.5) return absl::StrFormat("%.0fms", ms);
  return absl::StrFormat("%.1fs", ms / 1000);
}

std::string CellText(const MatrixCell& cell) {
  if (cell.result == ProbeResult::kOk) {
    return absl::StrCat("OK ", FormatRtt(cell.rtt));
  }
  if (cell.result == ProbeResult::kTls) {
    return absl::StrCat("TLS: ", TlsFailureClass(cell.message));
  }
  return ResultName(cell.result);
}

void PrintMatrixTable(std::ostream& out, const std::vector<std::string>& agents,
                      ProbeTransport transport,
                      const std::vector<MatrixCell>& cells) {
  std::map<std::pair<size_t, size_t>, const MatrixCell*> by_pair;
  for (const MatrixCell& cell : cells) {
    if (cell.transport == transport) by_pair[{cell.src, cell.dst}] = &cell;
  }
  std::vector<std::string> header = {"SRC\\DST"};
  header.insert(header.end(), agents.begin(), agents.end());
  Table table(std::move(header));
  for (size_t src = 0; src < agents.size(); ++src) {
    std::vector<std::string> row = {agents[src]};
    for (size_t dst = 0; dst < agents.size(); ++dst) {
      auto it = by_pair.find({src, dst});
      row.push_back(it == by_pair.end() ? "" : CellText(*it->second));
    }
    table.AddRow(std::move(row));
  }
  out << TransportWord(transport) << "\n";
  table.Print(out);
}

std::string DifferenceLine(const std::vector<std::string>& agents,
                           const MatrixCell& cell,
                           const ExpectedResult& expected, bool with_message) {
  std::string line =
      absl::StrCat(agents[cell.src], " -> ", agents[cell.dst], " ",
                   TransportWord(cell.transport), ": expected ",
                   expected.Name(), ", got ", ResultName(cell.result));
  if (with_message && !cell.message.empty()) {
    absl::StrAppend(&line, ": ", cell.message);
  }
  return line;
}

sockctl::output::MatrixReport MatrixReport(
    absl::string_view run, const std::vector<std::string>& agents,
    const std::vector<ProbeTransport>& transports,
    const std::vector<MatrixCell>& cells,
    const std::vector<ExpectedResult>& expected, bool as_expected) {
  sockctl::output::MatrixReport report;
  report.set_run(std::string(run));
  for (const std::string& agent : agents) report.add_agents(agent);
  for (ProbeTransport t : transports) report.add_transports(TransportWord(t));
  report.set_as_expected(as_expected);
  for (size_t i = 0; i < cells.size(); ++i) {
    const MatrixCell& cell = cells[i];
    sockctl::output::MatrixCell* out = report.add_cells();
    out->set_src(agents[cell.src]);
    out->set_dst(agents[cell.dst]);
    out->set_transport(TransportWord(cell.transport));
    out->set_result(ResultName(cell.result));
    if (cell.result == ProbeResult::kOk) {
      const int64_t nanos = absl::ToInt64Nanoseconds(cell.rtt);
      out->mutable_rtt()->set_seconds(nanos / 1000000000);
      out->mutable_rtt()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    }
    out->set_message(cell.message);
    out->set_expected(i < expected.size() ? expected[i].Name() : "OK");
    out->set_attempts(static_cast<uint32_t>(cell.attempts));
  }
  return report;
}

}  // namespace sockctl
