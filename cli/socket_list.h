// `server list` and `conn list`: one List RPC followed to its last page,
// printed on one agent (socket_tables.h's forms) or on every agent of a
// fleet (an AGENT column in front; -o name|addr print "AGENT ID" /
// "AGENT ADDRESS" lines, since an id alone does not say whose it is). What
// differs between the two verbs is their request and a SocketList of
// accessors; the running and printing is one piece of code.
//
//   const SocketList<ListServersRequest, ListServersResponse, Server>
//       kServers = {&Stub::ListServers, &ListServersResponse::servers,
//                   PrintServers, ServerHeader, ServerRow, ServerAddrLines};
//   return RunSocketList(client, kServers, BuildListRequest(args));
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <iostream>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/client.h"
#include "cli/fleet.h"
#include "cli/paging.h"
#include "cli/socket_tables.h"

namespace sockctl {

// How one kind of socket object (Server, Connection) is listed and shown.
template <typename Request, typename Response, typename Item>
struct SocketList {
  using Items = google::protobuf::RepeatedPtrField<Item>;
  // The List RPC.
  grpc::Status (sockagent::v1::SocketAgent::Stub::*rpc)(grpc::ClientContext*,
                                                        const Request&,
                                                        Response*);
  // The response's repeated field of items.
  const Items& (Response::*items)() const;
  // socket_tables.h's printer, columns and rows for this kind.
  bool (*print)(std::ostream& out, const google::protobuf::Message& response,
                const Items& items, OutputFormat format, TableView view);
  std::vector<std::string> (*header)(TableView view);
  std::vector<std::string> (*row)(const Item& item, TableView view);
  // -o addr: the item's address lines.
  std::vector<std::string> (*addr_lines)(const Item& item);
};

// One agent: every page, then the list in the chosen -o form (full table).
// A request that did not build is a usage error.
template <typename Request, typename Response, typename Item>
int RunSocketList(AgentClient& client,
                  const SocketList<Request, Response, Item>& kind,
                  const absl::StatusOr<Request>& request) {
  if (!request.ok()) return UsageError(request.status().message());
  Response all;
  if (grpc::Status s = ListAllPages(client, *request, kind.rpc, &all);
      !s.ok()) {
    return client.Fail(s);
  }
  return kind.print(std::cout, all, (all.*kind.items)(),
                    client.options().output, TableView::kFull)
             ? kExitOk
             : kExitFailure;
}

// Every agent of `fleet` at once (fleet.h's RunOnEveryAgent).
template <typename Request, typename Response, typename Item>
int RunSocketListOnEvery(Fleet& fleet,
                         const SocketList<Request, Response, Item>& kind,
                         const absl::StatusOr<Request>& request) {
  if (!request.ok()) return UsageError(request.status().message());
  const OutputFormat format = fleet.output();
  return RunOnEveryAgent(
      fleet,
      format == OutputFormat::kTable ? kind.header(TableView::kFull)
                                     : std::vector<std::string>{},
      [&](AgentClient& client, AgentOutput& out) {
        auto all = std::make_unique<Response>();
        grpc::Status s = ListAllPages(client, *request, kind.rpc, all.get());
        for (const Item& item : ((*all).*kind.items)()) {
          if (format == OutputFormat::kName) {
            out.rows.push_back({item.id()});
          } else if (format == OutputFormat::kAddr) {
            for (std::string& line : kind.addr_lines(item)) {
              out.rows.push_back({std::move(line)});
            }
          } else {
            out.rows.push_back(kind.row(item, TableView::kFull));
          }
        }
        out.response = std::move(all);
        return s;
      });
}

}  // namespace sockctl
