// Registry: the engine's table of what it owns, by number.
//
// Owns: the id counters (srv-N, conn-N), the servers and connections maps
// (live objects and their finalized history records), the counts that the
// admission limits read (servers listening, connections holding a socket),
// the closed history's order (oldest first), paging of the listings, and
// trimming of the history to EngineOptions::closed_connections_kept.
// It does not own bytes (BufferBudget does) nor decide when to trim (the
// engine posts TrimHistory so no caller sees its object disappear).
//
// Lock: none of its own. Every call runs under the engine lock (the loop
// thread in a handler, or a gRPC thread inline in a control call).
//
// Example:
//   Conn& c = registry.AddConn(std::move(conn));   // c.num from NewConnNum()
//   absl::StatusOr<Page<ConnectionInfo>> page = registry.ListConnections(f);
#ifndef SOCKAGENT_AGENT_REGISTRY_H_
#define SOCKAGENT_AGENT_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"

namespace sockagent {
namespace engine_internal {

struct Conn;    // engine_objects.h
struct Server;  // engine_objects.h

std::string ServerId(uint64_t num);
std::string ConnId(uint64_t num);
// "srv-12" -> 12 for prefix "srv-"; nullopt if malformed.
std::optional<uint64_t> ParseId(absl::string_view id, absl::string_view prefix);
// Either an id or a non-empty label selector: InvalidArgument otherwise.
absl::Status CheckSelector(const Selector& selector);
bool LabelsMatch(const std::shared_ptr<const Labels>& labels,
                 const Labels& selector);

// What the listings and events show of a record.
ConnectionInfo Snapshot(const Conn& c);
ServerInfo Snapshot(const Server& s);

class Registry final {
 public:
  using ServerMap = absl::btree_map<uint64_t, std::unique_ptr<Server>>;
  using ConnMap = absl::btree_map<uint64_t, std::unique_ptr<Conn>>;

  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  uint64_t NewConnNum() { return next_conn_num_++; }
  // Files a new connection (its num from NewConnNum) as holding a socket.
  Conn& AddConn(std::unique_ptr<Conn> conn);
  // Numbers a new server and files it as listening.
  Server& AddServer(std::unique_ptr<Server> server);
  // `num`'s socket is closed: it no longer counts as live and joins the
  // closed history (newest).
  void ConnFinalized(uint64_t num);
  // Server `num` stopped listening: it joins the stopped history (and
  // frees its name).
  void ServerStopped(uint64_t num);
  // The listening server named `name` (ServerSpec::name), or nullptr.
  Server* FindListeningByName(absl::string_view name);

  Conn* FindConn(uint64_t num) {
    auto it = conns_.find(num);
    return it == conns_.end() ? nullptr : it->second.get();
  }
  Server* FindServer(uint64_t num) {
    if (num == 0) return nullptr;
    auto it = servers_.find(num);
    return it == servers_.end() ? nullptr : it->second.get();
  }
  // By id; NotFound names the id.
  absl::StatusOr<Conn*> LookupConn(absl::string_view id);

  // Ordered by number. Iterators are invalidated by insertion and erasure:
  // no loop over them inserts or erases (AddConn runs from handlers only,
  // trimming is posted).
  ServerMap& servers() { return servers_; }
  ConnMap& conns() { return conns_; }
  const ServerMap& servers() const { return servers_; }
  const ConnMap& conns() const { return conns_; }
  // Connections holding a socket (open, or in a closing tail).
  size_t live_conns() const { return conns_live_; }
  size_t listening_servers() const { return servers_listening_; }
  size_t closed_conns() const { return closed_conns_.size(); }
  size_t stopped_servers() const { return stopped_servers_.size(); }

  // One page of a listing (page_size 0: 100; at most 1000). The page token
  // is the id of the last item returned.
  absl::StatusOr<Page<ServerInfo>> ListServers(const ServerFilter& filter);
  absl::StatusOr<Page<ConnectionInfo>> ListConnections(
      const ConnectionFilter& filter);

  // Erases the oldest closed connection records until at most `kept`
  // remain; `erasing` sees each one just before it goes.
  void TrimClosed(size_t kept, absl::FunctionRef<void(Conn&)> erasing);
  // Calls fn on the closed records, oldest first, while it returns true.
  void VisitClosed(absl::FunctionRef<bool(Conn&)> fn);
  // Erases the oldest stopped servers until at most `kept` remain.
  void TrimStopped(size_t kept);

 private:
  uint64_t next_server_num_ = 1;
  uint64_t next_conn_num_ = 1;
  // B-trees: ordered for listings and ~20 bytes per entry where std::map
  // spends 48.
  ServerMap servers_;
  ConnMap conns_;
  std::deque<uint64_t> stopped_servers_;  // Oldest first.
  // Names of listening servers (at most max_servers entries).
  absl::flat_hash_map<std::string, uint64_t> names_;
  std::deque<uint64_t> closed_conns_;  // Oldest first.
  size_t servers_listening_ = 0;
  size_t conns_live_ = 0;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_REGISTRY_H_
