// A gRPC server interceptor that tells the ControlListener how each call
// on one of its connections ended (cancelled? authenticated?), which is how
// the listener spots an HTTP/2 rapid-reset flood per connection and knows
// which connections to keep at its connection cap (control_listener.h).
//
//   creators.push_back(ControlGuardInterceptorFactory(listener.get()));
#ifndef SOCKAGENT_SERVICE_CONTROL_GUARD_H_
#define SOCKAGENT_SERVICE_CONTROL_GUARD_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "service/control_listener.h"

namespace sockagent {

// `listener` must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ControlGuardInterceptorFactory(ControlListener* listener);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONTROL_GUARD_H_
