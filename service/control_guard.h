// A gRPC server interceptor that tells the ControlListener when a call on
// one of its connections passed the token check (as the call starts: a
// SocketAgent method whose metadata carries the right bearer token, or any
// SocketAgent method when the agent has no token) and how each call ended
// (cancelled? authenticated?). That is how the listener spots an HTTP/2
// rapid-reset flood per connection, knows which connections to keep at its
// connection cap, and lifts the open-stream limit of unauthenticated
// connections (control_listener.h).
//
//   creators.push_back(ControlGuardInterceptorFactory(listener.get(), token));
#ifndef SOCKAGENT_SERVICE_CONTROL_GUARD_H_
#define SOCKAGENT_SERVICE_CONTROL_GUARD_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "service/control_listener.h"

namespace sockagent {

// `listener` must outlive the server. `bearer_token`: the agent's token
// (empty: none).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ControlGuardInterceptorFactory(ControlListener* listener,
                               std::string bearer_token);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONTROL_GUARD_H_
