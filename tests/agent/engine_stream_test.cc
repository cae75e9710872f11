// Stream attachments in the engine: attach/open, receiving through the
// attachment, sends that wait for room, half-close, detach and shutdown.
// Plain POSIX sockets are the peers.
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

// An engine answer that may arrive later, on the loop thread.
template <typename T>
struct Pending {
  struct State {
    absl::Notification done;
    std::optional<T> value;
  };
  std::shared_ptr<State> state = std::make_shared<State>();

  Done<T> Callback() {
    return [s = state](T v) {
      s->value.emplace(std::move(v));
      s->done.Notify();
    };
  }
  bool Wait() { return state->done.WaitForNotificationWithTimeout(kTimeout); }
  bool ready() const { return state->done.HasBeenNotified(); }
  T& value() { return *state->value; }
};

class EngineStreamTest : public EngineTest {
 protected:
  absl::StatusOr<StreamAttachment> Attach(const std::string& id,
                                          bool close_on_detach = false) {
    Pending<absl::StatusOr<StreamAttachment>> p;
    engine_->AttachStream(id, close_on_detach, p.Callback());
    if (!p.Wait()) return absl::DeadlineExceededError("no answer");
    return p.value();
  }
  absl::StatusOr<StreamAttachment> Open(const SocketAddress& to,
                                        Transport t = Transport::kTcp) {
    Pending<absl::StatusOr<StreamAttachment>> p;
    engine_->OpenStream(ClientTo(to, t), absl::InfiniteFuture(), p.Callback());
    if (!p.Wait()) return absl::DeadlineExceededError("no answer");
    return p.value();
  }
  // OpenStream to a plain listener on 127.0.0.1; `*peer` is the accepted
  // end.
  absl::StatusOr<StreamAttachment> OpenToPlainPeer(Fd* peer) {
    uint16_t port = 0;
    Fd listener = TcpListen(1, &port);
    absl::StatusOr<StreamAttachment> a = Open(Ip("127.0.0.1", port));
    if (a.ok()) *peer = Accept(listener.get());
    return a;
  }

  absl::StatusOr<StreamChunk> ReceiveChunk(uint64_t token) {
    Pending<absl::StatusOr<StreamChunk>> p;
    engine_->StreamReceive(token, 0, p.Callback());
    if (!p.Wait()) return absl::DeadlineExceededError("no answer");
    return p.value();
  }
  // StreamSends `chunk` until one is not answered because it waits for
  // room (the peer does not read: the socket buffers, then the engine's
  // send buffer of `bound` bytes fill); returns that one. `sent`: all the
  // bytes handed over, the waiting chunk included.
  std::optional<Pending<absl::Status>> SendUntilOneWaits(
      const StreamAttachment& a, const std::string& chunk, uint64_t bound,
      std::string* sent) {
    for (int i = 0; i < 4096; ++i) {
      Pending<absl::Status> p;
      engine_->StreamSend(a.token, chunk, p.Callback());
      sent->append(chunk);
      const bool settled = WaitFor([&] {
        if (p.ready()) return true;
        auto c = sync_->Connection(a.connection.id);
        return c.has_value() &&
               c->counters.send_buffered + chunk.size() > bound;
      });
      if (!settled) {
        ADD_FAILURE() << "a send neither answered nor waited";
        return std::nullopt;
      }
      if (!p.ready()) return p;
      if (!p.value().ok()) {
        ADD_FAILURE() << p.value();
        return std::nullopt;
      }
    }
    ADD_FAILURE() << "no send ever waited";
    return std::nullopt;
  }

  absl::Status SendChunk(uint64_t token, std::string data) {
    Pending<absl::Status> p;
    engine_->StreamSend(token, std::move(data), p.Callback());
    if (!p.Wait()) return absl::DeadlineExceededError("no answer");
    return p.value();
  }
};

TEST_F(EngineStreamTest, AttachIsExclusiveAndRefusesReceive) {
  Fd client;
  const std::string id = HoldServerWithClient(&client);
  ASSERT_TRUE(WriteAll(client.get(), "before"));
  ASSERT_TRUE(sync_->ConnectionWhen(id, [&](const ConnectionInfo& c) {
    return c.counters.recv_buffered == 6;
  }));
  absl::StatusOr<StreamAttachment> a = Attach(id);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_NE(a->token, 0u);
  EXPECT_TRUE(a->connection.stream_attached);
  EXPECT_TRUE(sync_->Connection(id)->stream_attached);

  absl::StatusOr<StreamAttachment> second = Attach(id);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, ReceiveSpec{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("Stream is attached"));

  // Bytes buffered before the attach come first.
  absl::StatusOr<StreamChunk> chunk = ReceiveChunk(a->token);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(chunk->data, "before");

  engine_->DetachStream(a->token);
  ASSERT_TRUE(WaitFor([&] { return !sync_->Connection(id)->stream_attached; }));
  EXPECT_EQ(sync_->Connection(id)->state, ConnectionState::kOpen);
  ASSERT_TRUE(WriteAll(client.get(), "after"));
  absl::StatusOr<std::string> again = sync_->ReceiveExactly(id, 5);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, "after");
  // A detached token is refused.
  EXPECT_EQ(SendChunk(a->token, "x").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(EngineStreamTest, SendWaitsForRoomInsteadOfRefusing) {
  EngineOptions options;
  options.send_buffer_bytes = 64 << 10;
  options.max_send_bytes = 64 << 10;
  MakeEngine(options);
  Fd peer;
  absl::StatusOr<StreamAttachment> a = OpenToPlainPeer(&peer);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string chunk = Pattern(0, 32 << 10);
  std::string sent;
  std::optional<Pending<absl::Status>> waiting =
      SendUntilOneWaits(*a, chunk, options.send_buffer_bytes, &sent);
  ASSERT_TRUE(waiting.has_value());
  auto c = sync_->Connection(a->connection.id);
  EXPECT_LE(c->counters.send_buffered, options.send_buffer_bytes);
  // One at a time.
  EXPECT_EQ(SendChunk(a->token, "more").code(),
            absl::StatusCode::kFailedPrecondition);
  // The peer reads: the waiting chunk goes in, and everything arrives in
  // order.
  std::string got;
  std::thread reader([&] { got = ReadExactly(peer.get(), sent.size()); });
  ASSERT_TRUE(waiting->Wait());
  EXPECT_TRUE(waiting->value().ok()) << waiting->value();
  reader.join();
  EXPECT_EQ(got, sent);
  EXPECT_LE(sync_->Connection(a->connection.id)->counters.send_buffered_peak,
            options.send_buffer_bytes + chunk.size());
}

TEST_F(EngineStreamTest, ShutdownWriteIsFinAfterQueuedBytesThenPeerClose) {
  Fd peer;
  absl::StatusOr<StreamAttachment> a = OpenToPlainPeer(&peer);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(SendChunk(a->token, "request").ok());
  Pending<absl::Status> fin;
  engine_->StreamShutdownWrite(a->token, fin.Callback());
  ASSERT_TRUE(fin.Wait());
  EXPECT_TRUE(fin.value().ok()) << fin.value();
  EXPECT_EQ(ReadToEof(peer.get()), "request");
  ASSERT_TRUE(WriteAll(peer.get(), "reply"));
  peer.Reset();
  std::string got;
  bool closed = false;
  while (!closed) {
    absl::StatusOr<StreamChunk> chunk = ReceiveChunk(a->token);
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    got += chunk->data;
    closed = chunk->closed;
    if (closed) {
      EXPECT_TRUE(chunk->peer_closed);
      EXPECT_EQ(chunk->reason, CloseReason::kPeerClosed);
    }
  }
  EXPECT_EQ(got, "reply");
}

TEST_F(EngineStreamTest, DetachClosesWhatTheStreamOpened) {
  Fd peer;
  absl::StatusOr<StreamAttachment> a = OpenToPlainPeer(&peer);
  ASSERT_TRUE(a.ok()) << a.status();
  // A parked receive is answered (empty) by the detach.
  Pending<absl::StatusOr<StreamChunk>> parked;
  engine_->StreamReceive(a->token, 0, parked.Callback());
  engine_->DetachStream(a->token);
  ASSERT_TRUE(parked.Wait());
  EXPECT_EQ(ReadToEof(peer.get()), "");  // FIN: a graceful close.
  ASSERT_TRUE(
      sync_->ConnectionWhen(a->connection.id, [&](const ConnectionInfo& c) {
        return c.state == ConnectionState::kClosed;
      }));
  EXPECT_EQ(sync_->Connection(a->connection.id)->close_reason,
            CloseReason::kStreamEnded);
}

TEST_F(EngineStreamTest, ResetIsAbortedAfterTheBytesBeforeIt) {
  Fd peer;
  absl::StatusOr<StreamAttachment> a = OpenToPlainPeer(&peer);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(WriteAll(peer.get(), "bye"));
  CloseWithReset(peer);
  std::string got;
  absl::Status end;
  while (end.ok()) {
    absl::StatusOr<StreamChunk> chunk = ReceiveChunk(a->token);
    if (!chunk.ok()) {
      end = chunk.status();
    } else {
      got += chunk->data;
    }
  }
  EXPECT_EQ(got, "bye");
  EXPECT_EQ(end.code(), absl::StatusCode::kAborted) << end;
  EXPECT_EQ(SendChunk(a->token, "x").code(), absl::StatusCode::kAborted);
}

TEST_F(EngineStreamTest, UdpChunksAreDatagrams) {
  Fd peer = UdpBound();
  const SocketAddress peer_address = Ip("127.0.0.1", LocalPort(peer.get()));
  absl::StatusOr<StreamAttachment> a = Open(peer_address, Transport::kUdp);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(SendChunk(a->token, "one").ok());
  ASSERT_TRUE(SendChunk(a->token, "").ok());  // An empty datagram.
  EXPECT_EQ(RecvDatagram(peer.get()), "one");
  EXPECT_EQ(RecvDatagram(peer.get()), "");
  ASSERT_TRUE(SendTo(peer.get(), "back", a->connection.local));
  absl::StatusOr<StreamChunk> chunk = ReceiveChunk(a->token);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  ASSERT_EQ(chunk->datagrams.size(), 1u);
  EXPECT_EQ(chunk->datagrams[0].data, "back");
  Pending<absl::Status> fin;
  engine_->StreamShutdownWrite(a->token, fin.Callback());
  ASSERT_TRUE(fin.Wait());
  EXPECT_TRUE(fin.value().ok());  // UDP has no FIN: nothing to wait for.
}

TEST_F(EngineStreamTest, ShutdownAnswersWaitingCalls) {
  EngineOptions options;
  options.send_buffer_bytes = 16 << 10;
  options.max_send_bytes = 16 << 10;
  MakeEngine(options);
  Fd peer;
  absl::StatusOr<StreamAttachment> a = OpenToPlainPeer(&peer);
  ASSERT_TRUE(a.ok()) << a.status();
  Pending<absl::StatusOr<StreamChunk>> parked;
  engine_->StreamReceive(a->token, 0, parked.Callback());
  std::string sent;
  std::optional<Pending<absl::Status>> waiting = SendUntilOneWaits(
      *a, std::string(16 << 10, 's'), options.send_buffer_bytes, &sent);
  ASSERT_TRUE(waiting.has_value());
  engine_->Shutdown();
  ASSERT_TRUE(parked.Wait());
  EXPECT_EQ(parked.value().status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(waiting->Wait());
  EXPECT_EQ(waiting->value().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sockagent::testing
