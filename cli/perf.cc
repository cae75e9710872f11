#include "cli/perf.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/output.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::Connection;
using sockagent::v1::PerfResponse;
using sockctl::output::PerfRun;
using sockctl::output::PerfSide;

// A number with an optional unit letter scaled by `base`; `suffixes` are
// stripped first (case-insensitive).
absl::StatusOr<uint64_t> ParseScaled(absl::string_view flag,
                                     absl::string_view text, double base,
                                     std::vector<absl::string_view> suffixes,
                                     absl::string_view example) {
  std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  absl::string_view rest = word;
  for (absl::string_view s : suffixes) {
    if (absl::ConsumeSuffix(&rest, s)) break;
  }
  double scale = 1;
  if (!rest.empty()) {
    switch (rest.back()) {
      case 'k':
        scale = base;
        break;
      case 'm':
        scale = base * base;
        break;
      case 'g':
        scale = base * base * base;
        break;
      case 't':
        scale = base * base * base * base;
        break;
    }
    if (scale != 1) rest.remove_suffix(1);
  }
  double value = 0;
  if (rest.empty() || !absl::SimpleAtod(rest, &value) ||
      !std::isfinite(value) || value < 0 || value * scale >= 1.8e19) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a quantity like ", example));
  }
  return static_cast<uint64_t>(std::llround(value * scale));
}

std::string Seconds(absl::Duration d) {
  return absl::StrFormat("%.2f", absl::ToDoubleSeconds(d));
}

// "941", "9.41", "0.5" and the unit: three significant digits, no
// exponent.
std::string Scaled(double v, absl::string_view unit, absl::string_view sep) {
  return absl::StrCat(
      v >= 100 ? absl::StrFormat("%.0f", v) : absl::StrFormat("%.3g", v), sep,
      unit);
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::string Micros(absl::Duration d) {
  if (d < absl::Milliseconds(1)) {
    return absl::StrCat(absl::ToInt64Microseconds(d), "us");
  }
  return absl::StrFormat("%.2fms", absl::ToDoubleMilliseconds(d));
}

}  // namespace

absl::StatusOr<uint64_t> ParseRate(absl::string_view flag,
                                   absl::string_view text) {
  return ParseScaled(flag, text, 1000, {"bit/s", "bps"}, "100M or 1.5G");
}

absl::StatusOr<uint64_t> ParseByteCount(absl::string_view flag,
                                        absl::string_view text) {
  return ParseScaled(flag, text, 1024, {"b"}, "10M or 4096");
}

std::string FormatBitRate(double bps) {
  const char* units[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
  int u = 0;
  while (bps >= 1000 && u < 4) {
    bps /= 1000;
    ++u;
  }
  return Scaled(bps, units[u], " ");
}

double BitsPerSecond(uint64_t bytes, absl::Duration duration) {
  const double s = absl::ToDoubleSeconds(duration);
  return s > 0 ? static_cast<double>(bytes) * 8 / s : 0;
}

PerfRun Summarize(const PerfResponse& response,
                  const std::vector<Connection>& receiver, bool udp) {
  PerfRun run;
  *run.mutable_response() = response;
  PerfSide* s = run.mutable_sender();
  const absl::Duration sent_for = FromProto(response.duration());
  s->set_bytes(response.bytes());
  ToProto(sent_for, s->mutable_duration());
  s->set_bits_per_second(BitsPerSecond(response.bytes(), sent_for));
  s->set_streams(response.streams_size());
  uint64_t sent_sequences = 0;
  absl::Duration rtt;
  uint64_t cwnd = 0;
  int with_info = 0;
  for (const auto& stream : response.streams()) {
    sent_sequences += stream.datagrams() + stream.send_errors();
    if (!stream.has_tcp_info()) continue;
    ++with_info;
    s->set_retransmits(s->retransmits() + stream.tcp_info().retransmits());
    rtt += FromProto(stream.tcp_info().rtt());
    cwnd +=
        uint64_t{stream.tcp_info().snd_cwnd()} * stream.tcp_info().snd_mss();
  }
  if (with_info > 0) {
    ToProto(rtt / with_info, s->mutable_rtt());
    s->set_cwnd_bytes(cwnd / with_info);
  }
  if (udp) s->set_datagrams(response.datagrams());

  PerfSide* r = run.mutable_receiver();
  absl::Time first = absl::InfiniteFuture();
  absl::Time last = absl::InfinitePast();
  absl::Duration jitter;
  int sessions = 0;
  for (const Connection& c : receiver) {
    if (udp) {
      if (!c.has_perf() || c.perf().run_id() != response.run_id()) continue;
      const auto& p = c.perf();
      ++sessions;
      r->set_bytes(r->bytes() + p.bytes());
      r->set_datagrams(r->datagrams() + p.datagrams());
      r->set_out_of_order(r->out_of_order() + p.out_of_order());
      jitter += FromProto(p.jitter());
      first = std::min(first, TimeOf(p.first_at()));
      last = std::max(last, TimeOf(p.last_at()));
      continue;
    }
    ++sessions;
    r->set_bytes(r->bytes() + c.counters().bytes_received());
    first = std::min(first, TimeOf(c.opened_at()));
    if (c.has_closed_at()) last = std::max(last, TimeOf(c.closed_at()));
  }
  r->set_streams(sessions);
  absl::Duration received_for = sent_for;
  if (last > first && last != absl::InfinitePast()) received_for = last - first;
  ToProto(received_for, r->mutable_duration());
  r->set_bits_per_second(BitsPerSecond(r->bytes(), received_for));
  if (udp) {
    if (sessions > 0) ToProto(jitter / sessions, r->mutable_jitter());
    const uint64_t lost =
        sent_sequences > r->datagrams() ? sent_sequences - r->datagrams() : 0;
    r->set_lost(lost);
    r->set_loss_percent(sent_sequences == 0
                            ? 0
                            : 100.0 * static_cast<double>(lost) /
                                  static_cast<double>(sent_sequences));
  }
  return run;
}

void PrintPerfRun(std::ostream& out, const PerfRun& run) {
  const bool udp = run.transport() == "udp";
  const PerfSide& s = run.sender();
  const PerfSide& r = run.receiver();
  out << "perf " << run.from() << " -> " << run.to() << " " << run.transport()
      << " " << run.target() << ", " << s.streams()
      << (s.streams() == 1 ? " stream" : " streams") << ", run " << run.run()
      << "\n";
  if (udp) {
    Table table({"ROLE", "BYTES", "SECONDS", "BITRATE", "DATAGRAMS", "LOST",
                 "JITTER", "OUT-OF-ORDER"});
    table.AddRow(
        {"sender", FormatByteCount(s.bytes()), Seconds(FromProto(s.duration())),
         FormatBitRate(s.bits_per_second()), absl::StrCat(s.datagrams())});
    table.AddRow(
        {"receiver", FormatByteCount(r.bytes()),
         Seconds(FromProto(r.duration())), FormatBitRate(r.bits_per_second()),
         absl::StrCat(r.datagrams()),
         absl::StrFormat("%d/%d (%.2g%%)", r.lost(), r.lost() + r.datagrams(),
                         r.loss_percent()),
         absl::StrFormat("%.3fms",
                         absl::ToDoubleMilliseconds(FromProto(r.jitter()))),
         absl::StrCat(r.out_of_order())});
    table.Print(out);
  } else {
    Table table({"ROLE", "BYTES", "SECONDS", "BITRATE", "RETR", "RTT", "CWND"});
    table.AddRow(
        {"sender", FormatByteCount(s.bytes()), Seconds(FromProto(s.duration())),
         FormatBitRate(s.bits_per_second()), absl::StrCat(s.retransmits()),
         Micros(FromProto(s.rtt())), FormatByteCount(s.cwnd_bytes())});
    table.AddRow({"receiver", FormatByteCount(r.bytes()),
                  Seconds(FromProto(r.duration())),
                  FormatBitRate(r.bits_per_second())});
    table.Print(out);
  }
  for (const auto& stream : run.response().streams()) {
    if (!stream.error().empty()) {
      out << "stream " << stream.local().ip() << ":" << stream.local().port()
          << ": " << stream.error() << "\n";
    }
  }
}

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> ParsePairs(
    absl::string_view text, const std::vector<std::string>& agents) {
  std::vector<std::pair<size_t, size_t>> pairs;
  auto index = [&](absl::string_view name) -> absl::StatusOr<size_t> {
    for (size_t i = 0; i < agents.size(); ++i) {
      if (agents[i] == name) return i;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("--pairs: no agent is named '", name, "'"));
  };
  for (absl::string_view word : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const size_t colon = word.find(':');
    // "a:b" names agents; an --agent address has its own ':'s, so try every
    // split until both halves name agents.
    bool found = false;
    for (size_t at = word.find(':'); at != absl::string_view::npos;
         at = word.find(':', at + 1)) {
      auto src = index(word.substr(0, at));
      auto dst = index(word.substr(at + 1));
      if (src.ok() && dst.ok()) {
        if (*src == *dst) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--pairs: '", word, "' sends from an agent to itself"));
        }
        pairs.emplace_back(*src, *dst);
        found = true;
        break;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("--pairs: '", word,
                       colon == absl::string_view::npos
                           ? "' is not SRC:DST"
                           : "' does not name two agents as SRC:DST"));
    }
  }
  if (pairs.empty()) {
    return absl::InvalidArgumentError("--pairs: give SRC:DST[,SRC:DST...]");
  }
  return pairs;
}

std::vector<std::pair<size_t, size_t>> AllPairs(size_t agents) {
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t src = 0; src < agents; ++src) {
    for (size_t dst = 0; dst < agents; ++dst) {
      if (src != dst) pairs.emplace_back(src, dst);
    }
  }
  return pairs;
}

absl::StatusOr<absl::Duration> PairDuration(size_t pairs, size_t concurrent,
                                            absl::Duration duration,
                                            absl::Duration budget,
                                            bool all_pairs, size_t agents) {
  concurrent = std::max<size_t>(concurrent, 1);
  const int64_t waves =
      static_cast<int64_t>((pairs + concurrent - 1) / concurrent);
  const absl::Duration whole = waves * (duration + kPairOverhead);
  if (budget <= absl::ZeroDuration()) {
    if (all_pairs && agents > kAllPairsWithoutBudget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--all-pairs over ", agents, " agents is ", pairs,
          " runs; at --time ", absl::FormatDuration(duration), " and ",
          concurrent, " at a time that takes ",
          absl::FormatDuration(absl::Trunc(whole, absl::Seconds(1))),
          ". Give --budget D (the whole run's time) or --pairs SRC:DST,..."));
    }
    return duration;
  }
  // The budget pays each wave's overhead first, then shares what is left.
  const absl::Duration per = budget / waves - kPairOverhead;
  if (per < kShortestPairRun) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--budget ", absl::FormatDuration(budget), " leaves each of ", pairs,
        " runs (", concurrent, " at a time) less than ",
        absl::FormatDuration(kShortestPairRun), "; it needs at least ",
        absl::FormatDuration(absl::Trunc(
            waves * (kShortestPairRun + kPairOverhead), absl::Seconds(1))),
        ", or fewer --pairs, or more --concurrent"));
  }
  return std::min(per, duration);
}

void PrintPerfMatrix(std::ostream& out, const sockctl::output::PerfMatrix& m) {
  const size_t n = m.agents_size();
  std::map<std::pair<std::string, std::string>, std::string> cells;
  for (const PerfRun& run : m.runs()) {
    double bps = run.receiver().bits_per_second();
    std::string text;
    if (!run.error().empty()) {
      text = "ERR";
    } else {
      const char* units[] = {"", "k", "M", "G", "T"};
      int u = 0;
      while (bps >= 1000 && u < 4) {
        bps /= 1000;
        ++u;
      }
      text = Scaled(bps, units[u], "");
    }
    cells[{run.from(), run.to()}] = text;
  }
  out << m.transport() << " bandwidth (receiver, bit/s)\n";
  std::vector<std::string> header = {"SRC\\DST"};
  for (size_t i = 0; i < n; ++i) header.push_back(m.agents(i));
  Table table(header);
  for (size_t src = 0; src < n; ++src) {
    std::vector<std::string> row = {m.agents(src)};
    for (size_t dst = 0; dst < n; ++dst) {
      auto it = cells.find({m.agents(src), m.agents(dst)});
      row.push_back(it == cells.end() ? kEmptyCell : it->second);
    }
    table.AddRow(std::move(row));
  }
  table.Print(out);
}

}  // namespace sockctl
