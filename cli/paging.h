// Follows a List RPC's next_page_token to the end, so that `server list`
// and `conn list` show everything whatever the page size.
//
//   ListServersResponse all;
//   int rc = ListAllPages(client, request,
//                         &sockagent::v1::SocketAgent::Stub::ListServers,
//                         &all);
#pragma once

#include <cstdio>

#include "cli/client.h"

namespace sockctl {

// Calls `rpc` with `request`, then again with each next_page_token until it
// is empty, appending every page to `all` (whose next_page_token is left
// empty). Each page is its own call with its own --timeout. Returns kExitOk,
// or the failed call's exit code (already reported).
template <typename Request, typename Response>
int ListAllPages(AgentClient& client, Request request,
                 grpc::Status (sockagent::v1::SocketAgent::Stub::*rpc)(
                     grpc::ClientContext*, const Request&, Response*),
                 Response* all) {
  for (;;) {
    Response page;
    auto ctx = client.NewContext();
    grpc::Status status = (client.agent().*rpc)(ctx.get(), request, &page);
    if (!status.ok()) return client.Fail(status);
    all->MergeFrom(page);  // Appends the repeated items.
    if (page.next_page_token().empty()) break;
    if (page.next_page_token() == request.page_token()) {
      // Would loop for ever; the agent is at fault.
      std::fprintf(stderr, "sockctl: the agent repeated page token '%s'\n",
                   page.next_page_token().c_str());
      return kExitFailure;
    }
    request.set_page_token(page.next_page_token());
  }
  all->clear_next_page_token();
  return kExitOk;
}

}  // namespace sockctl
