// bench_echo_server: the bare gRPC reference for the control-latency
// benchmark. A callback-API unary Echo service (the same API style and the
// same gRPC library as sockagentd), nothing else.
//
//   bench_echo_server [ADDR]   (default 127.0.0.1:0)
// Prints "echo serving on 127.0.0.1:PORT" once serving; runs until killed.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <memory>
#include <string>

#include "bench/echo.grpc.pb.h"

namespace {

class EchoService final : public bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const bench::EchoMessage* request,
                                 bench::EchoMessage* reply) override {
    reply->set_data(request->data());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::string addr = argc > 1 ? argv[1] : "127.0.0.1:0";
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    fprintf(stderr, "bench_echo_server: cannot listen on %s\n", addr.c_str());
    return 1;
  }
  printf("echo serving on 127.0.0.1:%d\n", port);
  fflush(stdout);
  server->Wait();
  return 0;
}
