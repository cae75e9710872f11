// Issue 12 §6, shutdown: a client that keeps an idle connection and is slow
// to answer the server's GOAWAY and PING (a long-lived Python, grpc-js or
// gRPC C++ client polls its idle channel only every few seconds) held
// SIGTERM for the whole --shutdown-grace. With no call in flight the agent
// now exits at once; the grace still bounds calls that are running.
//
// The idle client here is a raw HTTP/2 connection that makes one call and
// then never answers again (the extreme of a slow client).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <string>
#include <thread>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream,
                  absl::string_view payload) {
  std::string f;
  f += static_cast<char>((payload.size() >> 16) & 0xff);
  f += static_cast<char>((payload.size() >> 8) & 0xff);
  f += static_cast<char>(payload.size() & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream >> 24) & 0x7f);
  f += static_cast<char>((stream >> 16) & 0xff);
  f += static_cast<char>((stream >> 8) & 0xff);
  f += static_cast<char>(stream & 0xff);
  f.append(payload.data(), payload.size());
  return f;
}

// HPACK "literal header field without indexing, new name" (no Huffman).
std::string Literal(absl::string_view name, absl::string_view value) {
  std::string h(1, '\0');
  h += static_cast<char>(name.size());
  h.append(name.data(), name.size());
  h += static_cast<char>(value.size());
  h.append(value.data(), value.size());
  return h;
}

// Opens an HTTP/2 connection to `port`, makes one unauthenticated health
// Check call and reads until its trailers came (answering the server's
// SETTINGS). Then the connection stays open and idle: nothing more is read
// or answered.
Fd IdleGrpcConnection(uint16_t port) {
  Fd fd = TcpConnect(Ip("127.0.0.1", port));
  if (!fd.valid()) return fd;
  std::string out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  out += Frame(4, 0, 0, "");  // SETTINGS.
  const std::string headers =
      std::string("\x83\x86") +  // :method POST, :scheme http.
      Literal(":path", "/grpc.health.v1.Health/Check") +
      Literal(":authority", "localhost") +
      Literal("content-type", "application/grpc") + Literal("te", "trailers");
  out += Frame(1, 0x4, 1, headers);                             // END_HEADERS.
  out += Frame(0, 0x1, 1, absl::string_view("\0\0\0\0\0", 5));  // Empty msg.
  if (!WriteAll(fd.get(), out)) return Fd();
  std::string in;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    pollfd p{fd.get(), POLLIN, 100};
    if (::poll(&p, 1, 100) != 1) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) return Fd();
    in.append(buf, static_cast<size_t>(n));
    while (in.size() >= 9) {
      const size_t len = (static_cast<uint8_t>(in[0]) << 16) |
                         (static_cast<uint8_t>(in[1]) << 8) |
                         static_cast<uint8_t>(in[2]);
      if (in.size() < 9 + len) break;
      const uint8_t type = static_cast<uint8_t>(in[3]);
      const uint8_t flags = static_cast<uint8_t>(in[4]);
      in.erase(0, 9 + len);
      if (type == 4 && (flags & 0x1) == 0) {
        if (!WriteAll(fd.get(), Frame(4, 0x1, 0, ""))) return Fd();  // ACK.
      }
      // HEADERS with END_STREAM: the call's trailers.
      if (type == 1 && (flags & 0x1) != 0) return fd;
    }
  }
  return Fd();
}

uint16_t PortOf(const std::string& address) {
  return static_cast<uint16_t>(
      std::stoi(address.substr(address.rfind(':') + 1)));
}

class Shutdown : public AgentTestBase {
 protected:
  // A Receive on `id` waiting `wait`, on its own thread; returns once the
  // agent holds it parked (a second Receive is then FAILED_PRECONDITION).
  std::thread ParkReceive(const std::string& id, int64_t wait_seconds,
                          grpc::Status* result) {
    std::thread t([this, id, wait_seconds, result] {
      v1::ReceiveRequest request;
      request.set_connection_id(id);
      request.mutable_wait()->set_seconds(wait_seconds);
      v1::ReceiveResponse response;
      auto context = ContextWithDeadline(std::chrono::seconds(120));
      *result = stub_->Receive(context.get(), request, &response);
    });
    EXPECT_TRUE(WaitFor([&] {
      v1::ReceiveRequest probe;
      probe.set_connection_id(id);
      v1::ReceiveResponse response;
      auto context = ContextWithDeadline();
      return stub_->Receive(context.get(), probe, &response).error_code() ==
             grpc::StatusCode::FAILED_PRECONDITION;
    }));
    return t;
  }
};

TEST_F(Shutdown, IdleClientConnectionDoesNotHoldTheExit) {
  StartAgent({"--shutdown-grace=30s"});
  Fd idle = IdleGrpcConnection(PortOf(agent_->address()));
  ASSERT_TRUE(idle.valid());
  const absl::Time start = absl::Now();
  absl::StatusOr<int> status = agent_->Stop();
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_THAT(agent_->Stderr(), HasSubstr("event=stop "));
}

// A call in flight still gets the grace: a Receive waiting 2 s completes
// normally before the agent exits, even with an idle connection around, and
// the stop line says what was in flight.
TEST_F(Shutdown, CallInFlightStillGetsItsTime) {
  StartAgent({"--shutdown-grace=30s"});
  Fd idle = IdleGrpcConnection(PortOf(agent_->address()));
  ASSERT_TRUE(idle.valid());
  Fd peer;
  const std::string id = OpenToPlainPeer(&peer);
  ASSERT_FALSE(id.empty());
  grpc::Status receive_status = grpc::Status::CANCELLED;
  std::thread receiver = ParkReceive(id, 2, &receive_status);
  const absl::Time start = absl::Now();
  absl::StatusOr<int> status = agent_->Stop();
  const absl::Duration took = absl::Now() - start;
  receiver.join();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_TRUE(receive_status.ok()) << receive_status.error_message();
  EXPECT_LT(took, absl::Seconds(20));
  // The stop line says what was in flight (the probe Receive of
  // ParkReceive may still be counted while gRPC lets go of it).
  EXPECT_THAT(agent_->Stderr(),
              ::testing::ContainsRegex(
                  "event=stop .*in_flight=\"[0-9]+ calls? in flight: "
                  "/sockagent.v1.SocketAgent/Receive x"));
}

// The grace is the upper bound: a Receive waiting 60 s does not hold the
// exit beyond a 2 s grace, and the log says what was cut.
TEST_F(Shutdown, GraceBoundsCallsInFlight) {
  StartAgent({"--shutdown-grace=2s"});
  Fd peer;
  const std::string id = OpenToPlainPeer(&peer);
  ASSERT_FALSE(id.empty());
  grpc::Status receive_status;
  std::thread receiver = ParkReceive(id, 60, &receive_status);
  const absl::Time start = absl::Now();
  absl::StatusOr<int> status = agent_->Stop();
  const absl::Duration took = absl::Now() - start;
  receiver.join();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_GE(took, absl::Milliseconds(1500));
  EXPECT_LT(took, absl::Seconds(15));
  EXPECT_FALSE(receive_status.ok());
  EXPECT_THAT(agent_->Stderr(),
              ::testing::ContainsRegex(
                  "event=stop_grace_expired grace=2s cancelled=\"[0-9]+ "
                  "calls? in flight: [^\"]*/sockagent.v1.SocketAgent/Receive "
                  "x"));
}

}  // namespace
}  // namespace sockagent::testing
