// An AgentService on a real engine (Engine::Create), served in-process over
// real gRPC on 127.0.0.1:0, with a stub to call it: for service tests that
// need no daemon process.
//
//   InProcessAgent agent;
//   ASSERT_TRUE(agent.Start().ok());
//   agent.stub().ListServers(&context, request, &response);
#ifndef SOCKAGENT_TESTS_SERVICE_IN_PROCESS_AGENT_H_
#define SOCKAGENT_TESTS_SERVICE_IN_PROCESS_AGENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/engine.h"
#include "agent/resolver.h"
#include "service/agent_service.h"

namespace sockagent {

class InProcessAgent {
 public:
  InProcessAgent() = default;
  InProcessAgent(const InProcessAgent&) = delete;
  InProcessAgent& operator=(const InProcessAgent&) = delete;

  // The server first, so no call runs while the engine goes.
  ~InProcessAgent() {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    service_.reset();
    if (engine_ != nullptr) engine_->Shutdown();
  }

  absl::Status Start(AgentServiceOptions options = {},
                     EngineOptions engine_options = {}) {
    auto engine = Engine::Create(engine_options, &pool_);
    if (!engine.ok()) return engine.status();
    engine_ = *std::move(engine);
    service_ =
        std::make_unique<AgentService>(*engine_, &pool_, std::move(options));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port == 0) {
      return absl::InternalError("the in-process gRPC server did not start");
    }
    stub_ = v1::SocketAgent::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    return absl::OkStatus();
  }

  Engine& engine() { return *engine_; }
  v1::SocketAgent::Stub& stub() { return *stub_; }

 private:
  ResolverPool pool_{{.threads = 2, .max_queued = 16}};
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<AgentService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::SocketAgent::Stub> stub_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_TESTS_SERVICE_IN_PROCESS_AGENT_H_
