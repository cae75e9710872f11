#include "service/daemon_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "proto/local_agent_socket.h"
#include "tests/support/agent_process.h"

namespace sockagent {
namespace {

using ::sockagent::testing::TempDir;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseListenAddress, Ipv4WithPort) {
  auto a = ParseListenAddress("127.0.0.1:7878");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7878);
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->GrpcTarget(), "127.0.0.1:7878");
  EXPECT_EQ(a->Display(4242), "127.0.0.1:4242");
}

TEST(ParseListenAddress, BracketedIpv6) {
  auto a = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "::1");
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->Display(99), "[::1]:99");
}

TEST(ParseListenAddress, WildcardIsNotLoopback) {
  auto a = ParseListenAddress("0.0.0.0:7878");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->loopback);
  auto b = ParseListenAddress("[::]:7878");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->loopback);
}

TEST(ParseListenAddress, WholeLoopbackRangeIsLoopback) {
  auto a = ParseListenAddress("127.3.4.5:1");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->loopback);
}

TEST(ParseListenAddress, UnixPath) {
  auto a = ParseListenAddress("unix:/run/sockagent.sock");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->unix_path, "/run/sockagent.sock");
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->GrpcTarget(), "unix:/run/sockagent.sock");
}

TEST(ParseListenAddress, RejectsMalformedAddressesWithReason) {
  struct Case {
    std::string text;
    const char* why;
  } cases[] = {
      {"127.0.0.1", "expected HOST:PORT"},
      {"127.0.0.1:", "port must be a number"},
      {"127.0.0.1:65536", "port must be a number"},
      {"127.0.0.1:-1", "port must be a number"},
      {"127.0.0.1:http", "port must be a number"},
      {":7878", "empty host"},
      {"::1:7878", "brackets"},
      {"[::1:7878", "unbalanced"},
      {"[127.0.0.1]:1", "not an IPv6 address"},
      {"example.com:7878", "IP address or localhost"},
      {"unix:relative.sock", "absolute"},
      {"unix:/" + std::string(200, 'x'), "longer than"},
  };
  for (const auto& c : cases) {
    auto a = ParseListenAddress(c.text);
    ASSERT_FALSE(a.ok()) << c.text;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(a.status().message(), HasSubstr(c.why)) << c.text;
  }
}

TEST(DefaultListen, IsTheOwnerOnlyUnixSocket) {
  auto a = ParseListenAddress(DefaultListen());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->unix_path, LocalAgentSocketPath());
  if (geteuid() == 0) {
    EXPECT_EQ(DefaultListen(), "unix:/run/sockagent/sockagentd.sock");
  }
}

TEST(PreparePrivateDir, CreatesOwnerOnlyAndRefusesLooseOrForeignOnes) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/sock";
  ASSERT_TRUE(PreparePrivateDir(dir).ok());
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_TRUE(PreparePrivateDir(dir).ok());  // Existing and fine.
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  absl::Status loose = PreparePrivateDir(dir);
  EXPECT_EQ(loose.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loose.message(), HasSubstr("writable by group or others"));
  const std::string link = tmp.path() + "/link";
  ASSERT_EQ(symlink(dir.c_str(), link.c_str()), 0);
  EXPECT_THAT(PreparePrivateDir(link).message(), HasSubstr("not a directory"));
  if (geteuid() == 0) {
    ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
    ASSERT_EQ(chown(dir.c_str(), 65534, 65534), 0);
    EXPECT_THAT(PreparePrivateDir(dir).message(),
                HasSubstr("belongs to uid 65534"));
  }
}

TEST(CheckUnixSocketFree, RefusesALiveSocketOnly) {
  TempDir tmp;
  const std::string path = tmp.path() + "/a.sock";
  EXPECT_TRUE(CheckUnixSocketFree(path).ok());  // Nothing there.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // Bound but not listening: a stale file, as a killed agent leaves.
  EXPECT_TRUE(CheckUnixSocketFree(path).ok());
  ASSERT_EQ(listen(fd, 1), 0);
  EXPECT_THAT(CheckUnixSocketFree(path).message(),
              HasSubstr("another agent already serves"));
  close(fd);
}

}  // namespace
}  // namespace sockagent
