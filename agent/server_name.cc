// Named servers: name syntax and the "same spec" rule (server_name.h).
#include "agent/server_name.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "agent/quote.h"
#include "agent/tls.h"

namespace sockagent {

namespace {

bool LabelChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-';
}

const char* KindName(BehaviorKind kind) {
  switch (kind) {
    case BehaviorKind::kHold:
      return "hold";
    case BehaviorKind::kEcho:
      return "echo";
    case BehaviorKind::kGreeting:
      return "greeting";
    case BehaviorKind::kDiscard:
      return "discard";
    case BehaviorKind::kProxy:
      return "proxy";
  }
  return "?";
}

bool SamePort(const ServerSpec& old, const ServerInfo& old_info,
              const std::string& port) {
  if (port.empty() || port == "0" || port == old.bind.port) return true;
  uint32_t number = 0;
  if (!absl::SimpleAtoi(port, &number)) return false;
  for (const SocketAddress& a : old_info.local_addresses) {
    if (a.port != number) return false;
  }
  return !old_info.local_addresses.empty();
}

template <typename T>
void Compare(std::vector<std::string>& out, absl::string_view field,
             const T& was, const T& now) {
  if (was == now) return;
  out.push_back(absl::StrCat(field, " ", QuoteInput(absl::StrCat(was)), " -> ",
                             QuoteInput(absl::StrCat(now))));
}

}  // namespace

absl::Status CheckServerName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return absl::OkStatus();
  const bool ok = name.size() <= kMaxServerNameBytes &&
                  std::all_of(name.begin(), name.end(), LabelChar) &&
                  name.front() != '-' && name.back() != '-';
  if (ok && absl::StartsWith(name, "srv-") && name.size() > 4 &&
      std::all_of(name.begin() + 4, name.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", QuoteInput(name),
                     " looks like a server id (srv-N): pick another name"));
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, " ", QuoteInput(name),
      " is not a DNS label: 1 to 63 of a-z, 0-9 and '-', starting and ending "
      "with a letter or digit"));
}

std::string SpecDifference(const ServerSpec& old, const ServerInfo& old_info,
                           absl::string_view old_greeting,
                           const ServerSpec& requested) {
  std::vector<std::string> out;
  Compare(out, "transport", static_cast<int>(old.transport),
          static_cast<int>(requested.transport));
  Compare(out, "family", static_cast<int>(old.family),
          static_cast<int>(requested.family));
  Compare(out, "bind.host", old.bind.host, requested.bind.host);
  if (!SamePort(old, old_info, requested.bind.port)) {
    Compare(out, "bind.port", old.bind.port, requested.bind.port);
  }
  Compare(out, "bind.unix_path", old.bind.unix_path, requested.bind.unix_path);
  Compare(out, "backlog", old.backlog, requested.backlog);
  Compare(out, "reuse_address", static_cast<int>(old.reuse_address),
          static_cast<int>(requested.reuse_address));
  Compare(out, "behavior", std::string(KindName(old.behavior.kind)),
          std::string(KindName(requested.behavior.kind)));
  if (old_greeting != requested.behavior.greeting) {
    out.push_back("behavior.greeting.data");
  }
  Compare(out, "behavior.greeting.close_after",
          static_cast<int>(old.behavior.close_after_greeting),
          static_cast<int>(requested.behavior.close_after_greeting));
  Compare(out, "behavior.proxy.upstream.host", old.behavior.proxy_upstream.host,
          requested.behavior.proxy_upstream.host);
  Compare(out, "behavior.proxy.upstream.port", old.behavior.proxy_upstream.port,
          requested.behavior.proxy_upstream.port);
  Compare(out, "behavior.proxy.upstream.unix_path",
          old.behavior.proxy_upstream.unix_path,
          requested.behavior.proxy_upstream.unix_path);
  {
    const TlsClientContext* a = old.behavior.proxy_tls.get();
    const TlsClientContext* b = requested.behavior.proxy_tls.get();
    if ((a == nullptr) != (b == nullptr) ||
        (a != nullptr && !(a->spec() == b->spec()))) {
      out.push_back("behavior.proxy.tls");
    }
  }
  Compare(
      out, "behavior.proxy.transport",
      static_cast<int>(old.behavior.proxy_transport.value_or(old.transport)),
      static_cast<int>(
          requested.behavior.proxy_transport.value_or(requested.transport)));
  if (old.labels != requested.labels) out.push_back("labels");
  Compare(out, "ttl", absl::FormatDuration(old.ttl),
          absl::FormatDuration(requested.ttl));
  Compare(out, "idle_timeout", absl::FormatDuration(old.idle_timeout),
          absl::FormatDuration(requested.idle_timeout));
  Compare(out, "udp.max_sessions", old.udp_max_sessions,
          requested.udp_max_sessions);
  Compare(out, "udp.session_idle_timeout",
          absl::FormatDuration(old.udp_session_idle_timeout),
          absl::FormatDuration(requested.udp_session_idle_timeout));
  if (!(old.udp_reply == requested.udp_reply)) out.push_back("udp.reply_*");
  Compare(out, "metrics", static_cast<int>(old.metrics),
          static_cast<int>(requested.metrics));
  if ((old.tls == nullptr) != (requested.tls == nullptr)) {
    out.push_back(old.tls == nullptr ? "tls (none -> on)" : "tls (on -> none)");
  } else if (old.tls != nullptr &&
             !(old.tls->spec() == requested.tls->spec())) {
    out.push_back("tls");
  }
  return absl::StrJoin(out, "; ");
}

}  // namespace sockagent
