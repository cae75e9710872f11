// Follows a List RPC's next_page_token to the end, so that `server list`
// and `conn list` show everything whatever the page size.
//
//   ListServersResponse all;
//   grpc::Status s = ListAllPages(
//       client, request, &sockagent::v1::SocketAgent::Stub::ListServers, &all);
//   if (!s.ok()) return client.Fail(s);
#pragma once

#include "absl/strings/str_cat.h"
#include "cli/client.h"

namespace sockctl {

// Calls `rpc` with `request`, then again with each next_page_token until it
// is empty, appending every page to `all` (whose next_page_token is left
// empty). Each page is its own call with its own --timeout. Prints nothing,
// so that it may run on a worker thread for one agent of many. Returns the
// failed call's status; an agent that hands back the token it was given
// (which would loop for ever) is INTERNAL.
template <typename Request, typename Response>
grpc::Status ListAllPages(AgentClient& client, Request request,
                          grpc::Status (sockagent::v1::SocketAgent::Stub::*rpc)(
                              grpc::ClientContext*, const Request&, Response*),
                          Response* all) {
  for (;;) {
    Response page;
    auto ctx = client.NewContext();
    grpc::Status status = (client.agent().*rpc)(ctx.get(), request, &page);
    if (!status.ok()) return status;
    all->MergeFrom(page);  // Appends the repeated items.
    if (page.next_page_token().empty()) break;
    if (page.next_page_token() == request.page_token()) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("the agent repeated page token '",
                                       page.next_page_token(), "'"));
    }
    request.set_page_token(page.next_page_token());
  }
  all->clear_next_page_token();
  return grpc::Status::OK;
}

}  // namespace sockctl
