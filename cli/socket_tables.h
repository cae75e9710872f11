// How the socket verbs print servers and connections, so that `server
// start|stop|list`, `client open`, `close` and `conn list` show the same
// columns the same way, in every -o form: the response as JSON or YAML, the
// ids one per line (name), the addresses one per line (addr), or a table.
// No gRPC here.
//
//   PrintServers(std::cout, response, response.servers(),
//                OutputFormat::kAddr, TableView::kFull);
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <ostream>
#include <string>
#include <vector>

#include "cli/output_format.h"
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

// `response` is what json and yaml print; `servers` / `connections`
// (usually a field of it) feed the ids, the addresses and the table.
// Returns false when the JSON could not be printed (said on stderr).
bool PrintServers(
    std::ostream& out, const google::protobuf::Message& response,
    const google::protobuf::RepeatedPtrField<sockagent::v1::Server>& servers,
    OutputFormat format, TableView view);
// The TLS column: "TLSv1.3 h2 (ok)", "handshaking", "failed: unknown ca",
// "-" for a plain connection.
std::string TlsSummary(const sockagent::v1::Connection& c);

bool PrintConnections(
    std::ostream& out, const google::protobuf::Message& response,
    const google::protobuf::RepeatedPtrField<sockagent::v1::Connection>&
        connections,
    OutputFormat format, TableView view);

// -o addr: a server's bound addresses, one each ("127.0.0.1:41234"; a
// dual-stack server has two; "unix:/path"), so that
// `$(sockctl server start -o addr)` is dialable. A connection's is one line,
// "LOCAL REMOTE", like the table's columns and ss(8) ("-" when unset).
std::vector<std::string> ServerAddrLines(const sockagent::v1::Server& server);
std::string ConnectionAddrLine(const sockagent::v1::Connection& connection);
// The same as one line, in the shape of ServerAddrLines.
std::vector<std::string> ConnectionAddrLines(
    const sockagent::v1::Connection& connection);

// The table's columns and one row of it, for the tables above and for the
// per-agent rows of a fleet (which put an AGENT column in front).
std::vector<std::string> ServerHeader(TableView view);
std::vector<std::string> ServerRow(const sockagent::v1::Server& server,
                                   TableView view);
std::vector<std::string> ConnectionHeader(TableView view);
std::vector<std::string> ConnectionRow(
    const sockagent::v1::Connection& connection, TableView view);

}  // namespace sockctl
