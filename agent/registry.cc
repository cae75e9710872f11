// Registry: ids, the servers and connections maps, listings, history
// trimming (see registry.h).
#include "agent/registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/engine_objects.h"
#include "agent/quote.h"
#include "agent/server_name.h"

namespace sockagent {
namespace engine_internal {
namespace {

constexpr size_t kDefaultPageSize = 100;
constexpr size_t kMaxPageSize = 1000;

size_t PageSize(size_t requested) {
  if (requested == 0) return kDefaultPageSize;
  return std::min(requested, kMaxPageSize);
}

// Page tokens are the id of the last item returned; items are ordered by
// their number, so the next page starts after it.
absl::StatusOr<uint64_t> PageStart(absl::string_view token,
                                   absl::string_view prefix) {
  if (token.empty()) return 0;
  std::optional<uint64_t> num = ParseId(token, prefix);
  if (!num.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token ", QuoteInput(token), " is not valid"));
  }
  return *num;
}

}  // namespace

std::string ServerId(uint64_t num) { return absl::StrCat("srv-", num); }
std::string ConnId(uint64_t num) { return absl::StrCat("conn-", num); }

std::optional<uint64_t> ParseId(absl::string_view id,
                                absl::string_view prefix) {
  if (!absl::ConsumePrefix(&id, prefix) || id.empty()) return std::nullopt;
  for (char c : id) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t num = 0;
  if (!absl::SimpleAtoi(id, &num) || num == 0) return std::nullopt;
  return num;
}

absl::Status CheckSelector(const Selector& selector) {
  if (!selector.name.empty()) {
    if (!selector.id.empty() || !selector.labels.empty()) {
      return absl::InvalidArgumentError(
          "give one of an id, a name or a label selector, not several");
    }
    return CheckServerName(selector.name, "name");
  }
  if (!selector.id.empty() && !selector.labels.empty()) {
    return absl::InvalidArgumentError(
        "give either an id or a label selector, not both");
  }
  if (selector.id.empty() && selector.labels.empty()) {
    return absl::InvalidArgumentError(
        "give an id or a non-empty label selector");
  }
  return CheckLabels(selector.labels, "label_selector");
}

bool LabelsMatch(const std::shared_ptr<const Labels>& labels,
                 const Labels& selector) {
  if (selector.empty()) return true;
  if (labels == nullptr) return false;
  for (const auto& [key, value] : selector) {
    auto it = labels->find(key);
    if (it == labels->end() || it->second != value) return false;
  }
  return true;
}

ConnectionInfo Snapshot(const Conn& c) {
  ConnectionInfo info;
  info.id = ConnId(c.num);
  info.transport = c.transport;
  info.local = c.local.Unpack();
  info.remote = c.remote.Unpack();
  info.origin = c.origin;
  if (c.server_num != 0) info.server_id = ServerId(c.server_num);
  info.state = c.state;
  info.close_reason = c.close_reason;
  info.counters = c.counters;
  if (c.labels != nullptr) info.labels = *c.labels;
  info.opened_at = c.opened_at;
  info.closed_at = absl::InfinitePast();
  info.ttl = absl::ZeroDuration();
  info.idle_timeout = absl::ZeroDuration();
  if (c.extra != nullptr) {
    info.close_detail = c.extra->close_detail;
    info.closed_at = c.extra->closed_at;
    info.ttl = c.extra->ttl;
    info.idle_timeout = c.extra->idle_timeout;
    info.stream_attached = c.extra->attachment != 0;
    if (c.extra->proxy_peer != 0) {
      info.peer_connection_id = ConnId(c.extra->proxy_peer);
    }
    if (c.extra->faults != nullptr) {
      for (const ActiveFault& f : c.extra->faults->send.faults()) {
        info.faults.push_back(f.spec.name);
      }
      for (const ActiveFault& f : c.extra->faults->receive.faults()) {
        info.faults.push_back(f.spec.name);
      }
      for (const ActiveFault& f : c.extra->faults->datagrams.faults()) {
        info.faults.push_back(f.spec.name);
      }
      for (const ActiveFault& f :
           c.extra->faults->received_datagrams.faults()) {
        info.faults.push_back(f.spec.name);
      }
      info.fault_received_held =
          c.extra->faults->received.size() +
          c.extra->faults->received_datagrams.held_bytes();
    }
    info.fault_datagrams_dropped = c.extra->fault_dropped;
    info.fault_datagrams_duplicated = c.extra->fault_duplicated;
    info.fault_datagrams_delayed = c.extra->fault_delayed;
    if (c.extra->perf != nullptr) info.perf = c.extra->perf->stats();
    if (c.extra->tls != nullptr) {
      info.tls = c.extra->tls->info;
      info.tls_handshaking = info.tls == nullptr && !c.finalized;
    }
  }
  return info;
}

ServerInfo Snapshot(const Server& s) {
  ServerInfo info = s.info;  // Its greeting is empty: kept in s.greeting.
  if (s.labels != nullptr) info.labels = *s.labels;
  if (s.greeting != nullptr) {
    info.greeting_bytes = s.greeting->size();
    info.behavior.greeting = s.greeting->substr(0, kListedGreetingBytes);
  }
  return info;
}

Registry::Registry() = default;
Registry::~Registry() = default;

Conn& Registry::AddConn(std::unique_ptr<Conn> conn) {
  Conn& c = *conn;
  conns_.emplace(c.num, std::move(conn));
  ++conns_live_;
  return c;
}

Server& Registry::AddServer(std::unique_ptr<Server> server) {
  Server& s = *server;
  s.num = next_server_num_++;
  servers_.emplace(s.num, std::move(server));
  ++servers_listening_;
  if (!s.info.name.empty()) names_[s.info.name] = s.num;
  return s;
}

void Registry::ConnFinalized(uint64_t num) {
  --conns_live_;
  closed_conns_.push_back(num);
}

void Registry::ServerStopped(uint64_t num) {
  --servers_listening_;
  stopped_servers_.push_back(num);
  if (Server* s = FindServer(num); s != nullptr && !s->info.name.empty()) {
    auto it = names_.find(s->info.name);
    if (it != names_.end() && it->second == num) names_.erase(it);
  }
}

Server* Registry::FindListeningByName(absl::string_view name) {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : FindServer(it->second);
}

absl::StatusOr<Conn*> Registry::LookupConn(absl::string_view id) {
  std::optional<uint64_t> num = ParseId(id, "conn-");
  Conn* c = num.has_value() ? FindConn(*num) : nullptr;
  if (c == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("connection ", QuoteInput(id), " not found"));
  }
  return c;
}

absl::StatusOr<Page<ServerInfo>> Registry::ListServers(
    const ServerFilter& filter) {
  if (absl::Status s = CheckLabels(filter.selector, "label_selector");
      !s.ok()) {
    return s;
  }
  absl::StatusOr<uint64_t> start = PageStart(filter.page_token, "srv-");
  if (!start.ok()) return start.status();
  const size_t size = PageSize(filter.page_size);
  Page<ServerInfo> page;
  for (auto it = servers_.upper_bound(*start); it != servers_.end(); ++it) {
    const Server& s = *it->second;
    if (s.stopped() && !filter.include_stopped) continue;
    if (filter.metrics_only && !s.info.metrics) continue;
    if (filter.transport.has_value() && s.info.transport != *filter.transport) {
      continue;
    }
    if (!LabelsMatch(s.labels, filter.selector)) continue;
    if (page.items.size() == size) {
      page.next_page_token = page.items.back().id;
      break;
    }
    page.items.push_back(Snapshot(s));
  }
  return page;
}

absl::StatusOr<Page<ConnectionInfo>> Registry::ListConnections(
    const ConnectionFilter& filter) {
  if (absl::Status s = CheckLabels(filter.selector, "label_selector");
      !s.ok()) {
    return s;
  }
  if (!filter.id.empty()) {
    // One connection, whatever its state (open or in the history).
    absl::StatusOr<Conn*> c = LookupConn(filter.id);
    if (!c.ok()) return c.status();
    Page<ConnectionInfo> one;
    one.items.push_back(Snapshot(**c));
    return one;
  }
  absl::StatusOr<uint64_t> start = PageStart(filter.page_token, "conn-");
  if (!start.ok()) return start.status();
  std::optional<uint64_t> server_num;
  if (!filter.server_id.empty()) {
    server_num = ParseId(filter.server_id, "srv-");
    // No such server: nothing matches.
    if (!server_num.has_value()) return Page<ConnectionInfo>{};
  }
  auto state_wanted = [&filter](ConnectionState state) {
    if (state == ConnectionState::kClosed && filter.include_closed) {
      return true;
    }
    if (filter.states.empty()) return state != ConnectionState::kClosed;
    return std::find(filter.states.begin(), filter.states.end(), state) !=
           filter.states.end();
  };
  const size_t size = PageSize(filter.page_size);
  Page<ConnectionInfo> page;
  for (auto it = conns_.upper_bound(*start); it != conns_.end(); ++it) {
    const Conn& c = *it->second;
    if (server_num.has_value() && c.server_num != *server_num) continue;
    if (!state_wanted(c.state)) continue;
    if (filter.transport.has_value() && c.transport != *filter.transport) {
      continue;
    }
    if (!LabelsMatch(c.labels, filter.selector)) continue;
    if (page.items.size() == size) {
      page.next_page_token = page.items.back().id;
      break;
    }
    page.items.push_back(Snapshot(c));
  }
  return page;
}

void Registry::TrimClosed(size_t kept, absl::FunctionRef<void(Conn&)> erasing) {
  while (closed_conns_.size() > kept) {
    auto it = conns_.find(closed_conns_.front());
    if (it != conns_.end()) {
      erasing(*it->second);
      conns_.erase(it);
    }
    closed_conns_.pop_front();
  }
}

void Registry::VisitClosed(absl::FunctionRef<bool(Conn&)> fn) {
  for (uint64_t num : closed_conns_) {
    Conn* c = FindConn(num);
    if (c != nullptr && !fn(*c)) return;
  }
}

void Registry::TrimStopped(size_t kept) {
  while (stopped_servers_.size() > kept) {
    servers_.erase(stopped_servers_.front());
    stopped_servers_.pop_front();
  }
}

}  // namespace engine_internal
}  // namespace sockagent
