#include "cli/socket_tables.h"

#include <string>
#include <vector>

#include "cli/output.h"
#include "cli/proto_text.h"

namespace sockctl {

using sockagent::v1::Connection;
using sockagent::v1::Server;

std::vector<std::string> ServerHeader(TableView view) {
  std::vector<std::string> header = {"ID",        "NAME",     "TRANSPORT",
                                     "ADDRESSES", "BEHAVIOR", "STATE"};
  if (view == TableView::kFull) {
    header.insert(header.end(),
                  {"ACCEPTED", "ACTIVE", "RX", "TX", "DROPPED", "LABELS"});
  }
  return header;
}

namespace {

// UDP servers: datagrams dropped on the way in, and replies the reply
// budget held back ("3 in, 120 replies"); "-" for stream servers.
std::string DroppedText(const Server& s) {
  if (s.transport() != sockagent::v1::TRANSPORT_UDP) return "-";
  const auto& c = s.counters();
  return std::to_string(c.datagrams_dropped()) + " in, " +
         std::to_string(c.replies_dropped()) + " replies";
}

}  // namespace

std::vector<std::string> ServerRow(const Server& s, TableView view) {
  std::vector<std::string> row = {s.id(),
                                  s.name().empty() ? "-" : s.name(),
                                  TransportName(s.transport()),
                                  FormatAddresses(s.local_addresses()),
                                  BehaviorName(s.behavior()),
                                  ServerStateName(s.state())};
  if (view == TableView::kFull) {
    const auto& c = s.counters();
    row.insert(row.end(), {std::to_string(c.connections_accepted()),
                           std::to_string(c.connections_active()),
                           FormatByteCount(c.bytes_received()),
                           FormatByteCount(c.bytes_sent()), DroppedText(s),
                           FormatLabels(s.labels())});
  }
  return row;
}

std::vector<std::string> ConnectionHeader(TableView view) {
  if (view == TableView::kFull) {
    return {"ID", "TRANSPORT", "ORIGIN", "LOCAL",  "REMOTE", "STATE", "RX",
            "TX", "BUFFERED",  "PEAK",   "REASON", "LABELS", "TLS"};
  }
  return {"ID", "TRANSPORT", "LOCAL", "REMOTE", "STATE"};
}

std::vector<std::string> ConnectionRow(const Connection& c, TableView view) {
  if (view == TableView::kFull) {
    const auto& n = c.counters();
    return {c.id(),
            TransportName(c.transport()),
            OriginText(c),
            FormatAddress(c.local()),
            FormatAddress(c.remote()),
            ConnectionStateName(c.state()),
            FormatByteCount(n.bytes_received()),
            FormatByteCount(n.bytes_sent()),
            FormatByteCount(n.recv_buffered()),
            FormatByteCount(n.recv_buffered_peak()),
            CloseReasonText(c),
            FormatLabels(c.labels()),
            TlsSummary(c)};
  }
  return {c.id(), TransportName(c.transport()), FormatAddress(c.local()),
          FormatAddress(c.remote()), ConnectionStateName(c.state())};
}

std::string TlsSummary(const Connection& c) {
  if (!c.has_tls()) return "-";
  const auto& t = c.tls();
  if (t.handshaking()) return "handshaking";
  if (!t.failure().empty()) return "failed: " + t.failure();
  std::string out = t.version();
  if (!t.alpn().empty()) out += " " + t.alpn();
  if (t.resumed()) out += " resumed";
  if (!t.verification().empty()) out += " (" + t.verification() + ")";
  return out;
}

std::vector<std::string> ServerAddrLines(const Server& server) {
  std::vector<std::string> lines;
  for (const auto& address : server.local_addresses()) {
    lines.push_back(FormatAddress(address));
  }
  return lines;
}

std::string ConnectionAddrLine(const Connection& connection) {
  std::string local = FormatAddress(connection.local());
  std::string remote = FormatAddress(connection.remote());
  return (local.empty() ? kEmptyCell : local) + " " +
         (remote.empty() ? kEmptyCell : remote);
}

namespace {

// The -o forms of one kind of item: the response as JSON or YAML, the ids,
// the address lines, or a table.
template <typename Item>
bool PrintItems(std::ostream& out, const google::protobuf::Message& response,
                const google::protobuf::RepeatedPtrField<Item>& items,
                OutputFormat format, TableView view,
                std::vector<std::string> (*header)(TableView),
                std::vector<std::string> (*row)(const Item&, TableView),
                std::vector<std::string> (*addr_lines)(const Item&)) {
  switch (format) {
    case OutputFormat::kJson:
    case OutputFormat::kYaml:
      return PrintStructured(out, response, format);
    case OutputFormat::kName:
      for (const Item& item : items) out << item.id() << "\n";
      return true;
    case OutputFormat::kAddr:
      for (const Item& item : items) {
        for (const std::string& line : addr_lines(item)) out << line << "\n";
      }
      return true;
    case OutputFormat::kTable:
      break;
  }
  Table table(header(view));
  for (const Item& item : items) table.AddRow(row(item, view));
  table.Print(out);
  return true;
}

}  // namespace

std::vector<std::string> ConnectionAddrLines(const Connection& connection) {
  return {ConnectionAddrLine(connection)};
}

bool PrintServers(std::ostream& out, const google::protobuf::Message& response,
                  const google::protobuf::RepeatedPtrField<Server>& servers,
                  OutputFormat format, TableView view) {
  return PrintItems(out, response, servers, format, view, ServerHeader,
                    ServerRow, ServerAddrLines);
}

bool PrintConnections(
    std::ostream& out, const google::protobuf::Message& response,
    const google::protobuf::RepeatedPtrField<Connection>& connections,
    OutputFormat format, TableView view) {
  return PrintItems(out, response, connections, format, view, ConnectionHeader,
                    ConnectionRow, ConnectionAddrLines);
}

}  // namespace sockctl
