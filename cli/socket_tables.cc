#include "cli/socket_tables.h"

#include <string>
#include <vector>

#include "cli/output.h"
#include "cli/proto_text.h"

namespace sockctl {

using sockagent::v1::Connection;
using sockagent::v1::Server;

bool PrintServers(std::ostream& out, const google::protobuf::Message& response,
                  const google::protobuf::RepeatedPtrField<Server>& servers,
                  PrintMode mode, TableView view) {
  if (mode.json) return PrintJson(out, response);
  if (mode.quiet) {
    for (const Server& s : servers) out << s.id() << "\n";
    return true;
  }
  std::vector<std::string> header = {"ID", "TRANSPORT", "ADDRESSES", "BEHAVIOR",
                                     "STATE"};
  if (view == TableView::kFull) {
    header.insert(header.end(), {"ACCEPTED", "ACTIVE", "RX", "TX", "LABELS"});
  }
  Table table(std::move(header));
  for (const Server& s : servers) {
    std::vector<std::string> row = {s.id(), TransportName(s.transport()),
                                    FormatAddresses(s.local_addresses()),
                                    BehaviorName(s.behavior()),
                                    ServerStateName(s.state())};
    if (view == TableView::kFull) {
      const auto& c = s.counters();
      row.insert(row.end(),
                 {std::to_string(c.connections_accepted()),
                  std::to_string(c.connections_active()),
                  FormatByteCount(c.bytes_received()),
                  FormatByteCount(c.bytes_sent()), FormatLabels(s.labels())});
    }
    table.AddRow(std::move(row));
  }
  table.Print(out);
  return true;
}

bool PrintConnections(
    std::ostream& out, const google::protobuf::Message& response,
    const google::protobuf::RepeatedPtrField<Connection>& connections,
    PrintMode mode, TableView view) {
  if (mode.json) return PrintJson(out, response);
  if (mode.quiet) {
    for (const Connection& c : connections) out << c.id() << "\n";
    return true;
  }
  const bool full = view == TableView::kFull;
  Table table(full ? std::vector<std::string>{"ID", "TRANSPORT", "ORIGIN",
                                              "LOCAL", "REMOTE", "STATE", "RX",
                                              "TX", "BUFFERED", "PEAK",
                                              "REASON", "LABELS"}
                   : std::vector<std::string>{"ID", "TRANSPORT", "LOCAL",
                                              "REMOTE", "STATE"});
  for (const Connection& c : connections) {
    const auto& n = c.counters();
    if (full) {
      table.AddRow(
          {c.id(), TransportName(c.transport()), OriginText(c),
           FormatAddress(c.local()), FormatAddress(c.remote()),
           ConnectionStateName(c.state()), FormatByteCount(n.bytes_received()),
           FormatByteCount(n.bytes_sent()), FormatByteCount(n.recv_buffered()),
           FormatByteCount(n.recv_buffered_peak()), CloseReasonText(c),
           FormatLabels(c.labels())});
    } else {
      table.AddRow({c.id(), TransportName(c.transport()),
                    FormatAddress(c.local()), FormatAddress(c.remote()),
                    ConnectionStateName(c.state())});
    }
  }
  table.Print(out);
  return true;
}

}  // namespace sockctl
