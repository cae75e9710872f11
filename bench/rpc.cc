// bench_rpc: control-path timing over gRPC, for bench/run.py.
//
//   bench_rpc echo TARGET --calls N --threads T [--payload 64]
//       Unary Echo against bench_echo_server.
//   bench_rpc send TARGET --conn ID --calls N --threads T [--payload 64]
//       sockagent Send of the payload on an open connection.
//   bench_rpc list TARGET [--page-size 100] [--repeat R]
//       ListConnections: times the first page R times, then walks every
//       page W times (--walks, default 3), timing each page.
// Every thread makes its calls one after the other on one shared channel.
// Prints "key value" lines: calls, secs, ops_per_sec, p50_us, p99_us (list:
// pages, connections, first_page_p50_us, walk_per_page_us (mean),
// walk_page_p50_us).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/echo.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string Flag(int argc, char** argv, const std::string& name,
                 const std::string& def) {
  for (int i = 3; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return argv[i + 1];
  return def;
}

double Us(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
  return ctx;
}

int Fail(const char* what, const grpc::Status& st) {
  fprintf(stderr, "bench_rpc: %s: %s (code %d)\n", what,
          st.error_message().c_str(), static_cast<int>(st.error_code()));
  return 1;
}

// Runs `call` (returns false on failure) calls/threads times on each thread.
int Calls(int calls, int threads, const std::function<grpc::Status()>& call) {
  std::vector<double> lat;
  std::mutex mu;
  grpc::Status failed = grpc::Status::OK;
  // One warm-up call: channel connection and first-call costs stay out.
  if (grpc::Status st = call(); !st.ok()) return Fail("warm-up call", st);
  const int per_thread = std::max(1, calls / threads);
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<double> mine;
      mine.reserve(static_cast<size_t>(per_thread));
      for (int i = 0; i < per_thread; ++i) {
        auto t0 = Clock::now();
        grpc::Status st = call();
        mine.push_back(Us(Clock::now() - t0));
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          failed = st;
          break;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : pool) th.join();
  const double secs = Us(Clock::now() - start) / 1e6;
  if (!failed.ok()) return Fail("call", failed);
  printf("calls %zu\nsecs %.6f\nops_per_sec %.1f\n", lat.size(), secs,
         static_cast<double>(lat.size()) / secs);
  double mean = 0;
  for (double x : lat) mean += x;
  mean /= static_cast<double>(lat.size());
  const double p50 = Percentile(lat, 0.5), p99 = Percentile(lat, 0.99);
  printf("mean_us %.1f\np50_us %.1f\np99_us %.1f\n", mean, p50, p99);
  return 0;
}

int List(sockagent::v1::SocketAgent::Stub& stub, int page_size, int repeat,
         int walks) {
  using sockagent::v1::ListConnectionsRequest;
  using sockagent::v1::ListConnectionsResponse;
  std::vector<double> first;
  for (int i = 0; i < repeat + 1; ++i) {
    ListConnectionsRequest req;
    req.set_page_size(static_cast<uint32_t>(page_size));
    ListConnectionsResponse resp;
    auto ctx = Context();
    auto t0 = Clock::now();
    grpc::Status st = stub.ListConnections(ctx.get(), req, &resp);
    if (!st.ok()) return Fail("ListConnections", st);
    if (i > 0) first.push_back(Us(Clock::now() - t0));  // i == 0 warms up.
  }
  // Walk every page `walks` times, timing each page: the p50 over all
  // pages shows whether a page deep in the list costs more than the first.
  std::vector<double> walk;
  size_t pages = 0, conns = 0;
  for (int w = 0; w < walks; ++w) {
    std::string token;
    pages = conns = 0;
    do {
      ListConnectionsRequest req;
      req.set_page_size(static_cast<uint32_t>(page_size));
      req.set_page_token(token);
      ListConnectionsResponse resp;
      auto ctx = Context();
      auto t0 = Clock::now();
      grpc::Status st = stub.ListConnections(ctx.get(), req, &resp);
      walk.push_back(Us(Clock::now() - t0));
      if (!st.ok()) return Fail("ListConnections", st);
      ++pages;
      conns += static_cast<size_t>(resp.connections_size());
      token = resp.next_page_token();
    } while (!token.empty());
  }
  double mean = 0;
  for (double x : walk) mean += x;
  mean /= static_cast<double>(walk.size());
  printf("pages %zu\nconnections %zu\nfirst_page_p50_us %.1f\n", pages, conns,
         Percentile(first, 0.5));
  printf("walk_per_page_us %.1f\nwalk_page_p50_us %.1f\n", mean,
         Percentile(walk, 0.5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_rpc echo|send|list TARGET [flags]\n");
    return 2;
  }
  const std::string mode = argv[1];
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(
      argv[2], grpc::InsecureChannelCredentials(), channel_args);
  const int calls = std::atoi(Flag(argc, argv, "calls", "2000").c_str());
  const int threads = std::atoi(Flag(argc, argv, "threads", "1").c_str());
  const std::string payload(
      static_cast<size_t>(std::atoi(Flag(argc, argv, "payload", "64").c_str())),
      'p');
  if (calls <= 0 || threads <= 0) {
    fprintf(stderr, "bench_rpc: --calls and --threads must be positive\n");
    return 2;
  }
  if (mode == "echo") {
    auto stub = bench::Echo::NewStub(channel);
    return Calls(calls, threads, [&] {
      bench::EchoMessage req, resp;
      req.set_data(payload);
      auto ctx = Context();
      grpc::Status st = stub->Echo(ctx.get(), req, &resp);
      if (st.ok() && resp.data() != payload)
        return grpc::Status(grpc::StatusCode::DATA_LOSS, "echo differs");
      return st;
    });
  }
  auto stub = sockagent::v1::SocketAgent::NewStub(channel);
  if (mode == "send") {
    const std::string conn = Flag(argc, argv, "conn", "");
    return Calls(calls, threads, [&] {
      sockagent::v1::SendRequest req;
      sockagent::v1::SendResponse resp;
      req.set_connection_id(conn);
      req.set_data(payload);
      auto ctx = Context();
      grpc::Status st = stub->Send(ctx.get(), req, &resp);
      if (st.ok() && resp.bytes_accepted() != payload.size())
        return grpc::Status(grpc::StatusCode::DATA_LOSS, "short send");
      return st;
    });
  }
  if (mode == "list") {
    return List(*stub, std::atoi(Flag(argc, argv, "page-size", "100").c_str()),
                std::atoi(Flag(argc, argv, "repeat", "20").c_str()),
                std::max(1, std::atoi(Flag(argc, argv, "walks", "3").c_str())));
  }
  fprintf(stderr, "bench_rpc: unknown mode %s\n", mode.c_str());
  return 2;
}
