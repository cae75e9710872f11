// Small gRPC client helpers for end-to-end tests: a channel to an agent
// address and a context with a deadline.
#ifndef SOCKAGENT_TESTS_SUPPORT_GRPC_CLIENT_H_
#define SOCKAGENT_TESTS_SUPPORT_GRPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

namespace sockagent::testing {

inline std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

inline std::unique_ptr<grpc::ClientContext> ContextWithDeadline(
    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_GRPC_CLIENT_H_
