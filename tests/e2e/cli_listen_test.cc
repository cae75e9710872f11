// `sockctl listen` (netcat's listen mode) end to end: the real sockctl with
// its stdin, stdout and stderr on pipes, the real sockagentd, and plain
// POSIX sockets as the clients that connect to the printed port. After
// every run the agent must hold no server and no open connection.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/posix_peer.h"
#include "tests/support/spawn.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(30);

// A child whose stdin, stdout and stderr are pipes the test drives.
class Interactive {
 public:
  static std::unique_ptr<Interactive> Start(
      const std::vector<std::string>& argv) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
        pipe2(err, O_CLOEXEC) != 0) {
      return nullptr;
    }
    auto child = std::unique_ptr<Interactive>(new Interactive());
    absl::StatusOr<pid_t> pid = Spawn(argv, in[0], out[1], err[1]);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    child->in_ = in[1];
    child->out_ = out[0];
    child->err_ = err[0];
    child->pid_ = pid.ok() ? *pid : -1;
    return child;
  }

  ~Interactive() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    CloseIn();
    close(out_);
    close(err_);
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  bool WriteIn(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = write(in_, data.data() + done, data.size() - done);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  void CloseIn() {
    if (in_ >= 0) close(in_);
    in_ = -1;
  }

  // Exactly `n` bytes of stdout (fewer on EOF or at the deadline).
  std::string ReadOut(size_t n) {
    const absl::Time deadline = absl::Now() + kDeadline;
    while (out_buf_.size() < n && Pump(out_, &out_buf_, deadline)) {
    }
    std::string got = out_buf_.substr(0, n);
    out_buf_.erase(0, got.size());
    return got;
  }

  // Group 1 of the first match of `pattern` in stderr, waiting for it.
  std::string AwaitErr(const std::string& pattern) {
    const absl::Time deadline = absl::Now() + kDeadline;
    std::smatch m;
    const std::regex re(pattern);
    while (!std::regex_search(err_buf_, m, re)) {
      if (!Pump(err_, &err_buf_, deadline)) return "";
    }
    return m[1];
  }

  // The exit code, or -1 (killed by a signal, or still running at the
  // deadline).
  int Wait() {
    const absl::Time deadline = absl::Now() + kDeadline;
    int status = 0;
    const bool done = WaitFor(
        [&] {
          // Drain the pipes so that a chatty child never blocks on them.
          DrainNonBlocking();
          return waitpid(pid_, &status, WNOHANG) == pid_;
        },
        deadline - absl::Now());
    if (!done) return -1;
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  void Signal(int sig) { kill(pid_, sig); }

  std::string err() {
    DrainNonBlocking();
    return err_buf_;
  }

 private:
  Interactive() = default;

  // Reads once from `fd` into `buf`; false at EOF or the deadline.
  static bool Pump(int fd, std::string* buf, absl::Time deadline) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) != 1) return false;
    char chunk[4096];
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buf->append(chunk, static_cast<size_t>(n));
    return true;
  }

  void DrainNonBlocking() {
    for (auto [fd, buf] : {std::pair{out_, &out_buf_}, {err_, &err_buf_}}) {
      pollfd p{fd, POLLIN, 0};
      while (poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0) {
        char chunk[4096];
        const ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n <= 0) break;
        buf->append(chunk, static_cast<size_t>(n));
      }
    }
  }

  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  bool exited_ = false;
  std::string out_buf_;
  std::string err_buf_;
};

class CliListen : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }

  std::unique_ptr<Interactive> Listen(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SOCKCTL_PATH, "--agent", agent_->address(),
                                     "listen"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto child = Interactive::Start(argv);
    EXPECT_TRUE(child != nullptr && child->running());
    return child;
  }

  // The port of the "listening on 127.0.0.1:PORT" line; 0 if none came.
  static uint16_t Port(Interactive& child) {
    const std::string port =
        child.AwaitErr(R"(listening on 127\.0\.0\.1:([0-9]+)\n)");
    EXPECT_FALSE(port.empty()) << child.err();
    return port.empty() ? 0 : static_cast<uint16_t>(std::stoi(port));
  }

  // Servers that are not stopped.
  int LiveServers() {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto ctx = ContextWithDeadline();
    grpc::Status s = stub_->ListServers(ctx.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.servers_size();
  }

  // Connections not closed (the default listing).
  int OpenConnections() {
    v1::ListConnectionsRequest request;
    v1::ListConnectionsResponse response;
    auto ctx = ContextWithDeadline();
    grpc::Status s = stub_->ListConnections(ctx.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.connections_size();
  }

  // What `listen` leaves behind: nothing (closing is asynchronous on the
  // agent, so wait for it).
  void ExpectNothingLeft() {
    EXPECT_EQ(LiveServers(), 0);
    EXPECT_TRUE(WaitFor([&] { return OpenConnections() == 0; }))
        << OpenConnections() << " connections still open";
  }
};

TEST_F(CliListen, TcpCarriesBytesBothWaysThenStopsItsServer) {
  auto child = Listen({"0"});
  const uint16_t port = Port(*child);
  ASSERT_NE(port, 0);
  Fd client = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(WriteAll(client.get(), "hello from the client\n"));
  EXPECT_EQ(child->ReadOut(22), "hello from the client\n");
  ASSERT_TRUE(child->WriteIn("hello from stdin\n"));
  EXPECT_EQ(ReadExactly(client.get(), 17), "hello from stdin\n");

  // Like nc -l, one connection: the listener is gone once it was taken.
  EXPECT_EQ(LiveServers(), 0);
  EXPECT_FALSE(TcpConnect(Ip("127.0.0.1", port)).valid());

  // The peer closing ends it.
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(child->Wait(), 0) << child->err();
  EXPECT_EQ(ReadToEof(client.get()), "");
  ExpectNothingLeft();
}

TEST_F(CliListen, StdinEndSendsFinAndPeerBytesStillArrive) {
  auto child = Listen({"127.0.0.1", "0"});
  const uint16_t port = Port(*child);
  ASSERT_NE(port, 0);
  Fd client = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(child->WriteIn("bye"));
  child->CloseIn();
  // FIN after the bytes of stdin.
  EXPECT_EQ(ReadToEof(client.get()), "bye");
  ASSERT_TRUE(WriteAll(client.get(), "after your FIN"));
  EXPECT_EQ(child->ReadOut(14), "after your FIN");
  client.Reset();
  EXPECT_EQ(child->Wait(), 0) << child->err();
  ExpectNothingLeft();
}

TEST_F(CliListen, UdpFirstPeerDatagramsBothWays) {
  auto child = Listen({"--udp", "--idle", "200ms", "0"});
  const uint16_t port = Port(*child);
  ASSERT_NE(port, 0);
  Fd peer = UdpBound();
  ASSERT_TRUE(peer.valid());
  ASSERT_TRUE(SendTo(peer.get(), "dgram1", Ip("127.0.0.1", port)));
  EXPECT_EQ(child->ReadOut(6), "dgram1");
  // Each read of stdin goes back as one datagram.
  ASSERT_TRUE(child->WriteIn("reply one\n"));
  EXPECT_EQ(RecvDatagram(peer.get()), "reply one\n");
  ASSERT_TRUE(SendTo(peer.get(), "dgram2", Ip("127.0.0.1", port)));
  EXPECT_EQ(child->ReadOut(6), "dgram2");
  ASSERT_TRUE(child->WriteIn("reply two\n"));
  EXPECT_EQ(RecvDatagram(peer.get()), "reply two\n");
  // Ends --idle after stdin ended, without a leftover server.
  child->CloseIn();
  EXPECT_EQ(child->Wait(), 0) << child->err();
  ExpectNothingLeft();
}

TEST_F(CliListen, KeepOpenServesTwoClientsInTurn) {
  auto child = Listen({"-k", "0"});
  const uint16_t port = Port(*child);
  ASSERT_NE(port, 0);
  Fd first = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(first.valid());
  ASSERT_TRUE(WriteAll(first.get(), "first"));
  EXPECT_EQ(child->ReadOut(5), "first");
  // The second connects while the first is served: it waits its turn, and
  // what stdin says now goes to the first only.
  Fd second = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(second.valid());
  ASSERT_TRUE(WriteAll(second.get(), "second"));
  ASSERT_TRUE(child->WriteIn("to-1"));
  EXPECT_EQ(ReadExactly(first.get(), 4), "to-1");
  first.Reset();
  EXPECT_EQ(child->ReadOut(6), "second");
  ASSERT_TRUE(child->WriteIn("to-2"));
  EXPECT_EQ(ReadExactly(second.get(), 4), "to-2");
  second.Reset();
  // Still listening for a third, until interrupted.
  Fd third = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(third.valid());
  ASSERT_TRUE(WriteAll(third.get(), "third"));
  EXPECT_EQ(child->ReadOut(5), "third");
  child->Signal(SIGINT);
  EXPECT_EQ(child->Wait(), 130) << child->err();
  // The agent closed the third connection on the way out.
  EXPECT_EQ(ReadToEof(third.get()), "");
  ExpectNothingLeft();
}

TEST_F(CliListen, SigtermWhileWaitingStopsTheServer) {
  auto child = Listen({"--udp", "0"});
  ASSERT_NE(Port(*child), 0);
  EXPECT_EQ(LiveServers(), 1);
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(), 130) << child->err();
  ExpectNothingLeft();
}

TEST_F(CliListen, SigintWhileAttachedClosesTheConnection) {
  auto child = Listen({"0"});
  const uint16_t port = Port(*child);
  ASSERT_NE(port, 0);
  Fd client = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(WriteAll(client.get(), "x"));
  EXPECT_EQ(child->ReadOut(1), "x");
  child->Signal(SIGINT);
  EXPECT_EQ(child->Wait(), 130) << child->err();
  EXPECT_EQ(ReadToEof(client.get()), "");
  ExpectNothingLeft();
}

TEST_F(CliListen, BadPortIsAUsageErrorAndStartsNothing) {
  CommandResult r = RunSockctl(agent_->address(), {"listen", "70000"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, ::testing::HasSubstr("PORT"));
  r = RunSockctl(agent_->address(), {"listen"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(LiveServers(), 0);
}

}  // namespace
}  // namespace sockagent::testing
