// How the socket verbs print servers and connections, so that `server
// start|stop|list`, `client open`, `close` and `conn list` show the same
// columns the same way. Three forms: the response as JSON (--json), the ids
// one per line (-q), or a table. No gRPC here.
//
//   PrintServers(std::cout, response, response.servers(),
//                {.json = json, .quiet = quiet}, TableView::kFull);
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <ostream>
#include <string>
#include <vector>

#include "sockagent/v1/agent.pb.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sockctl {

enum class TableView {
  // What was just created: servers ID TRANSPORT ADDRESSES BEHAVIOR STATE;
  // connections ID TRANSPORT LOCAL REMOTE STATE.
  kBrief,
  // Also the counters and labels (and a connection's origin and close
  // reason): for lists and for the final state of what was stopped/closed.
  kFull,
};

struct PrintMode {
  bool json = false;   // The whole response message; wins over quiet.
  bool quiet = false;  // Ids only.
};

// `response` is what --json prints; `servers` / `connections` (usually a
// field of it) feed the ids and the table. Returns false when the JSON
// could not be printed (said on stderr).
bool PrintServers(
    std::ostream& out, const google::protobuf::Message& response,
    const google::protobuf::RepeatedPtrField<sockagent::v1::Server>& servers,
    PrintMode mode, TableView view);
bool PrintConnections(
    std::ostream& out, const google::protobuf::Message& response,
    const google::protobuf::RepeatedPtrField<sockagent::v1::Connection>&
        connections,
    PrintMode mode, TableView view);

// The table's columns and one row of it, for the tables above and for the
// per-agent rows of a fleet (which put an AGENT column in front).
std::vector<std::string> ServerHeader(TableView view);
std::vector<std::string> ServerRow(const sockagent::v1::Server& server,
                                   TableView view);
std::vector<std::string> ConnectionHeader(TableView view);
std::vector<std::string> ConnectionRow(
    const sockagent::v1::Connection& connection, TableView view);

}  // namespace sockctl
