// Malformed request messages (issue 12, section 4), sent as raw bytes
// through a generic gRPC call: the caller gets INVALID_ARGUMENT saying the
// request could not be parsed (gRPC 1.51 alone answers UNIMPLEMENTED with no
// words), the agent logs it, and on a Stream a malformed message after the
// first ends the call without sending FIN to the connection's peer.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "/sockagent.v1.SocketAgent/";

// One call of any method with hand-built message bytes, through the
// generic (ByteBuffer) stub. One operation at a time, each waited for.
class RawCall {
 public:
  RawCall(const std::shared_ptr<grpc::Channel>& channel,
          const std::string& method, absl::Duration deadline)
      : stub_(channel) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    call_ = stub_.PrepareCall(&context_, method, &cq_);
    call_->StartCall(this);
    started_ = Wait();
  }

  ~RawCall() {
    if (!finished_) {
      context_.TryCancel();
      Finish();
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  bool started() const { return started_; }

  bool Write(absl::string_view bytes) {
    grpc::Slice slice(bytes.data(), bytes.size());
    grpc::ByteBuffer buffer(&slice, 1);
    call_->Write(buffer, this);
    return Wait();
  }

  bool Read(std::string* out) {
    grpc::ByteBuffer buffer;
    call_->Read(&buffer, this);
    if (!Wait()) return false;
    std::vector<grpc::Slice> slices;
    if (!buffer.Dump(&slices).ok()) return false;
    out->clear();
    for (const auto& s : slices) {
      out->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return true;
  }

  bool WritesDone() {
    call_->WritesDone(this);
    return Wait();
  }

  grpc::Status Finish() {
    grpc::Status status;
    call_->Finish(&status, this);
    Wait();
    finished_ = true;
    return status;
  }

 private:
  bool Wait() {
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok)) return false;
    return ok;
  }

  grpc::GenericStub stub_;
  grpc::ClientContext context_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  bool started_ = false;
  bool finished_ = false;
};

class Malformed : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }

  // A unary (or server-streaming) call with one raw request message.
  grpc::Status CallWith(const std::string& method, absl::string_view bytes) {
    RawCall call(ChannelTo(agent_->address()), kService + method,
                 absl::Seconds(30));
    EXPECT_TRUE(call.started());
    call.Write(bytes);
    call.WritesDone();
    std::string ignored;
    while (call.Read(&ignored)) {
    }
    return call.Finish();
  }

  void ExpectUnparsable(const std::string& method, absl::string_view bytes,
                        const std::string& type) {
    grpc::Status s = CallWith(method, bytes);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << s.error_message();
    EXPECT_THAT(s.error_message(),
                HasSubstr("could not be parsed as sockagent.v1." + type));
  }
};

TEST_F(Malformed, TruncatedMessage) {
  // Field 2 (bind), length 10, but only 2 bytes follow.
  ExpectUnparsable("StartServer", std::string("\x12\x0a\x0a\x02", 4),
                   "StartServerRequest");
}

TEST_F(Malformed, WrongWireType) {
  // Field 1 with wire type 7, which does not exist.
  ExpectUnparsable("ListServers", std::string("\x0f\x00", 2),
                   "ListServersRequest");
  // An end-group tag without its start.
  ExpectUnparsable("OpenClient", std::string("\x0c", 1), "OpenClientRequest");
}

TEST_F(Malformed, InvalidUtf8InString) {
  // ResolveRequest.host = "\xff\xfe".
  ExpectUnparsable("Resolve", std::string("\x0a\x02\xff\xfe", 4),
                   "ResolveRequest");
}

TEST_F(Malformed, DeepNesting) {
  // 200 nested groups of an unknown field: beyond protobuf's recursion
  // limit (100).
  std::string bytes(200, '\x7b');
  bytes.append(200, '\x7c');
  ExpectUnparsable("GetHostInfo", bytes, "GetHostInfoRequest");
}

TEST_F(Malformed, ServerStreamingWatch) {
  ExpectUnparsable("Watch", std::string("\x0f\x00", 2), "WatchRequest");
}

TEST_F(Malformed, UnknownMethodStaysUnimplemented) {
  grpc::Status s = CallWith("NoSuchMethod", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  // And a well-formed request still works through the same raw path.
  grpc::Status ok = CallWith("GetHostInfo", "");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
}

TEST_F(Malformed, IsLogged) {
  ExpectUnparsable("ListServers", std::string("\x0f\x00", 2),
                   "ListServersRequest");
  std::string log;
  EXPECT_TRUE(WaitFor([&] {
    log += agent_->Stderr();
    return log.find("malformed_request") != std::string::npos;
  })) << log;
}

TEST_F(Malformed, StreamFirstMessage) {
  RawCall call(ChannelTo(agent_->address()), absl::StrCat(kService, "Stream"),
               absl::Seconds(30));
  ASSERT_TRUE(call.started());
  call.Write(std::string("\x0a\x05\x0a", 3));  // Truncated StreamStart.
  grpc::Status s = call.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("could not be parsed as sockagent.v1.StreamRequest"));
}

// The regression: a malformed message after the first was taken for the
// caller's half-close, and the agent sent FIN to the peer.
TEST_F(Malformed, StreamLaterMessageDetachesWithoutFin) {
  Fd peer;
  const std::string id = OpenToPlainPeer(&peer);
  ASSERT_FALSE(id.empty());
  {
    RawCall call(ChannelTo(agent_->address()), absl::StrCat(kService, "Stream"),
                 absl::Seconds(15));
    ASSERT_TRUE(call.started());
    v1::StreamRequest start;
    start.mutable_start()->set_attach_connection_id(id);
    ASSERT_TRUE(call.Write(start.SerializeAsString()));
    std::string first;
    ASSERT_TRUE(call.Read(&first));
    v1::StreamResponse response;
    ASSERT_TRUE(response.ParseFromString(first));
    ASSERT_TRUE(response.has_connection());
    v1::StreamRequest data;
    data.set_data("hello");
    ASSERT_TRUE(call.Write(data.SerializeAsString()));
    EXPECT_EQ(ReadExactly(peer.get(), 5), "hello");
    // Field 2 (data), length 5, two bytes.
    call.Write(
        std::string("\x12\x05"
                    "ab",
                    4));
    grpc::Status s = call.Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("could not be parsed"));
  }
  // Detached, still open, no FIN: the connection carries bytes both ways.
  ASSERT_TRUE(WaitFor([&] {
    v1::ListConnectionsRequest request;
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    if (!stub_->ListConnections(context.get(), request, &response).ok()) {
      return false;
    }
    for (const auto& c : response.connections()) {
      if (c.id() == id) {
        return c.state() == v1::CONNECTION_STATE_OPEN && !c.stream_attached();
      }
    }
    return false;
  }));
  grpc::Status sent = Send(id, "after");
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  EXPECT_EQ(ReadExactly(peer.get(), 5), "after");
  ASSERT_TRUE(WriteAll(peer.get(), "back"));
  v1::ReceiveRequest receive;
  receive.set_connection_id(id);
  receive.set_min_bytes(4);
  receive.mutable_wait()->set_seconds(10);
  v1::ReceiveResponse received;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub_->Receive(context.get(), receive, &received).ok());
  EXPECT_EQ(received.data(), "back");
}

// A connection the Stream opened closes as when the caller goes away.
TEST_F(Malformed, StreamOpenedConnectionCloses) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  ASSERT_TRUE(listener.valid());
  RawCall call(ChannelTo(agent_->address()), absl::StrCat(kService, "Stream"),
               absl::Seconds(15));
  ASSERT_TRUE(call.started());
  v1::StreamRequest start;
  start.mutable_start()->mutable_open()->mutable_remote()->set_host(
      "127.0.0.1");
  start.mutable_start()->mutable_open()->mutable_remote()->set_port(port);
  ASSERT_TRUE(call.Write(start.SerializeAsString()));
  std::string first;
  ASSERT_TRUE(call.Read(&first));
  Fd peer = Accept(listener.get());
  ASSERT_TRUE(peer.valid());
  call.Write(std::string("\x0f\x00", 2));
  grpc::Status s = call.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Closed gracefully (reason STREAM_ENDED): the peer reads its end.
  EXPECT_EQ(ReadToEof(peer.get()), "");
}

}  // namespace
}  // namespace sockagent::testing
