// Issue 12, §2 and §5 (first bullet): a caller must not make the agent (root
// on most hosts) delete, bind or dial a file it was not meant to, through a
// real sockagentd:
// - StopServer removes only the socket the server bound: a regular file put
//   in its place, or a precious file behind a swapped directory symlink,
//   survives.
// - Relative UNIX paths and paths with NUL bytes are INVALID_ARGUMENT;
//   abstract names may still carry NUL.
// - A stale socket left by a killed agent is replaced only on request, only
//   when nobody listens, and never when it is another kind of file.
// - --allow-unix-paths is checked on the resolved path: a symlink inside
//   the allowed directory takes neither a bind nor a connect out of it.
#include "tests/support/files.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

// A listening UNIX socket bound by the test (not the agent).
Fd PlainUnixListener(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), 8) != 0) {
    ADD_FAILURE() << "listen on " << path << ": " << strerror(errno);
    return Fd();
  }
  return fd;
}

bool HasPendingConnection(const Fd& listener) {
  fcntl(listener.get(), F_SETFL, O_NONBLOCK);
  Fd accepted(::accept(listener.get(), nullptr, nullptr));
  return accepted.valid();
}

class FilesHostile : public AgentTestBase {
 protected:
  grpc::Status StartUnix(const std::string& path, v1::Server* server,
                         bool replace_stale = false) {
    v1::StartServerRequest request;
    request.set_transport(v1::TRANSPORT_UNIX);
    request.mutable_bind()->set_unix_path(path);
    request.mutable_behavior()->mutable_echo();
    request.set_replace_stale(replace_stale);
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    grpc::Status status = stub_->StartServer(context.get(), request, &response);
    if (server != nullptr) *server = response.server();
    return status;
  }

  grpc::Status OpenUnix(const std::string& path) {
    v1::OpenClientRequest request;
    request.set_transport(v1::TRANSPORT_UNIX);
    request.mutable_remote()->set_unix_path(path);
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    return stub_->OpenClient(context.get(), request, &response);
  }

  grpc::Status Stop(const std::string& id) {
    v1::StopServerRequest request;
    request.set_id(id);
    v1::StopServerResponse response;
    auto context = ContextWithDeadline();
    return stub_->StopServer(context.get(), request, &response);
  }

  // Echo over a plain connection to `path` (as the kernel names it).
  static bool Echoes(const std::string& path) {
    Fd c = UnixConnect(path);
    return c.valid() && WriteAll(c.get(), "ping") &&
           ReadExactly(c.get(), 4) == "ping";
  }
};

TEST_F(FilesHostile, StopServerLeavesAFileThatReplacedItsSocket) {
  TempDir dir;
  StartAgent();
  const std::string path = dir.path() + "/s.sock";
  v1::Server server;
  ASSERT_TRUE(StartUnix(path, &server).ok());
  ASSERT_TRUE(IsSocket(path));
  // The attacker swaps the socket for a file the agent never created.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  WriteFile(path, "precious");
  ASSERT_TRUE(Stop(server.id()).ok());
  EXPECT_EQ(ReadFile(path), "precious");
}

TEST_F(FilesHostile, StopServerFollowsNoSwappedDirectorySymlink) {
  TempDir dir;
  StartAgent();
  const std::string a = dir.path() + "/a";
  const std::string b = dir.path() + "/b";
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(::mkdir(a.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(b.c_str(), 0700), 0);
  WriteFile(b + "/s.sock", "precious");
  ASSERT_EQ(::symlink(a.c_str(), link.c_str()), 0);
  v1::Server server;
  ASSERT_TRUE(StartUnix(link + "/s.sock", &server).ok());
  ASSERT_TRUE(IsSocket(a + "/s.sock"));
  // Repoint link at b, atomically.
  ASSERT_EQ(::symlink(b.c_str(), (link + ".new").c_str()), 0);
  ASSERT_EQ(::rename((link + ".new").c_str(), link.c_str()), 0);
  ASSERT_TRUE(Stop(server.id()).ok());
  EXPECT_EQ(ReadFile(b + "/s.sock"), "precious");
  // What the agent did create, it removed: the socket in a.
  EXPECT_FALSE(Exists(a + "/s.sock"));
}

TEST_F(FilesHostile, RelativeAndNulPathsAreInvalidArgument) {
  TempDir dir;
  StartAgent();
  grpc::Status relative = StartUnix("rel.sock", nullptr);
  EXPECT_EQ(relative.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(relative.error_message(),
            "unix path 'rel.sock' is relative: give an absolute path (or "
            "'@name' for the abstract namespace)");
  EXPECT_FALSE(Exists(absl::StrCat("/proc/", agent_->pid(), "/cwd/rel.sock")));
  const std::string with_nul = dir.path() + std::string("/a\0b", 4);
  grpc::Status nul = StartUnix(with_nul, nullptr);
  EXPECT_EQ(nul.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(nul.error_message(),
              HasSubstr("unix path has a NUL byte at offset"));
  EXPECT_FALSE(Exists(dir.path() + "/a"));  // Not "a", silently.
  // Clients the same.
  EXPECT_EQ(OpenUnix("rel.sock").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(OpenUnix(with_nul).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The CLI passes the agent's words on.
  CommandResult cli =
      RunSockctl(agent_->address(), {"server", "start", "--unix", "x.sock"});
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_THAT(cli.err, HasSubstr("is relative"));
}

TEST_F(FilesHostile, AbstractNameWithNulStillWorks) {
  StartAgent();
  const std::string name =
      absl::StrCat("@sockagent-files-", ::getpid(), std::string("\0tail", 5));
  v1::Server server;
  grpc::Status status = StartUnix(name, &server);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(server.local_addresses(0).unix_path(), name);
  EXPECT_TRUE(Echoes(name));
  EXPECT_TRUE(OpenUnix(name).ok());
}

TEST_F(FilesHostile, StaleSocketOfAKilledAgentIsReplacedOnlyOnRequest) {
  TempDir dir;
  const std::string path = dir.path() + "/s.sock";
  StartAgent();
  ASSERT_TRUE(StartUnix(path, nullptr).ok());
  ASSERT_EQ(::kill(agent_->pid(), SIGKILL), 0);
  ASSERT_TRUE(agent_->Stop().ok());
  ASSERT_TRUE(IsSocket(path));  // Left behind.

  StartAgent();
  grpc::Status plain = StartUnix(path, nullptr);
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  v1::Server server;
  grpc::Status replaced = StartUnix(path, &server, /*replace_stale=*/true);
  ASSERT_TRUE(replaced.ok()) << replaced.error_message();
  EXPECT_TRUE(Echoes(path));

  // Live now: never replaced, and it keeps serving.
  struct stat before;
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);
  grpc::Status live = StartUnix(path, nullptr, /*replace_stale=*/true);
  EXPECT_EQ(live.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(live.error_message(),
            absl::StrCat("bind unix:", path, ": a server is listening on ",
                         path, ": not replaced"));
  struct stat after;
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_TRUE(Echoes(path));

  // Not a socket: never removed.
  const std::string file = dir.path() + "/file.sock";
  WriteFile(file, "keep me");
  grpc::Status regular = StartUnix(file, nullptr, /*replace_stale=*/true);
  EXPECT_EQ(regular.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(regular.error_message(),
              HasSubstr("is a regular file, not a socket: not replaced"));
  EXPECT_EQ(ReadFile(file), "keep me");

  // The CLI's way: sockctl server start --unix PATH --replace-stale.
  const std::string stale = dir.path() + "/cli.sock";
  { Fd dead = PlainUnixListener(stale); }
  ASSERT_TRUE(IsSocket(stale));
  CommandResult cli = RunSockctl(
      agent_->address(), {"server", "start", "--unix", stale, "--echo"});
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_THAT(cli.err, HasSubstr("ALREADY_EXISTS"));
  cli = RunSockctl(agent_->address(), {"server", "start", "--unix", stale,
                                       "--echo", "--replace-stale"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(Echoes(stale));
}

TEST_F(FilesHostile, SymlinkDoesNotTakeABindOutOfTheAllowedDirectory) {
  TempDir dir;
  const std::string allowed = dir.path() + "/allowed";
  const std::string outside = dir.path() + "/outside";
  ASSERT_EQ(::mkdir(allowed.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (allowed + "/esc").c_str()), 0);
  StartAgent({"--allow-unix-paths=" + allowed + "/"});

  grpc::Status escaped = StartUnix(allowed + "/esc/s.sock", nullptr);
  EXPECT_EQ(escaped.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      escaped.error_message(),
      absl::StrCat("bind unix:", allowed, "/esc/s.sock (resolves to ", outside,
                   "/s.sock) is not allowed by "
                   "--allow-unix-paths"));
  EXPECT_FALSE(Exists(outside + "/s.sock"));

  // Inside, it works as before.
  v1::Server server;
  grpc::Status inside = StartUnix(allowed + "/ok.sock", &server);
  ASSERT_TRUE(inside.ok()) << inside.error_message();
  EXPECT_TRUE(Echoes(allowed + "/ok.sock"));
  ASSERT_TRUE(Stop(server.id()).ok());
  EXPECT_FALSE(Exists(allowed + "/ok.sock"));
}

TEST_F(FilesHostile, SymlinkDoesNotTakeAConnectToTheAgentsControlSocket) {
  TempDir dir;
  const std::string allowed = dir.path() + "/allowed";
  const std::string control = dir.path() + "/ctl";
  ASSERT_EQ(::mkdir(allowed.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(control.c_str(), 0700), 0);
  const std::string agent_socket = control + "/agent.sock";
  StartAgent(
      {"--listen=unix:" + agent_socket, "--allow-unix-paths=" + allowed + "/"});
  // A link to the socket itself, and one to its directory.
  ASSERT_EQ(::symlink(agent_socket.c_str(), (allowed + "/a.sock").c_str()), 0);
  ASSERT_EQ(::symlink(control.c_str(), (allowed + "/d").c_str()), 0);

  for (const std::string& path :
       {allowed + "/a.sock", allowed + "/d/agent.sock"}) {
    grpc::Status status = OpenUnix(path);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << path;
    EXPECT_EQ(
        status.error_message(),
        absl::StrCat("connect unix:", path, " (resolves to ", agent_socket,
                     ") is not allowed by --allow-unix-paths"));
  }

  // A socket really inside the allowed directory is dialled as before.
  Fd listener = PlainUnixListener(allowed + "/in.sock");
  ASSERT_TRUE(listener.valid());
  grpc::Status inside = OpenUnix(allowed + "/in.sock");
  EXPECT_TRUE(inside.ok()) << inside.error_message();
  EXPECT_TRUE(HasPendingConnection(listener));
}

}  // namespace
}  // namespace sockagent::testing
