// agent/unix_path.h on its own: path syntax, binding through the directory
// descriptor, the inode-checked unlink, stale-socket replacement and the
// policy on resolved paths, against a real filesystem (a temp directory).
#include "agent/unix_path.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/files.h"

namespace sockagent {
namespace {

using ::sockagent::testing::Exists;
using ::sockagent::testing::IsSocket;
using ::sockagent::testing::ReadFile;
using ::sockagent::testing::WriteFile;
using ::testing::HasSubstr;

class Dir {
 public:
  Dir() {
    std::string tmpl = absl::StrCat(::testing::TempDir(), "unix-path-XXXXXX");
    path_ = ::mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(absl::string_view name) const {
    return absl::StrCat(path_, "/", name);
  }

 private:
  std::string path_;
};

UniqueFd UnixSocket() {
  return UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
}

// Connects to `kernel_path` ("@..." abstract, or a filesystem path of at
// most 107 bytes); 0 or errno.
int ConnectTo(const std::string& kernel_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, kernel_path.data(), kernel_path.size());
  socklen_t len = offsetof(sockaddr_un, sun_path) + kernel_path.size() + 1;
  if (kernel_path[0] == '@') {
    addr.sun_path[0] = '\0';
    len -= 1;
  }
  UniqueFd fd = UnixSocket();
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0
             ? 0
             : errno;
}

// A listening socket at `path` bound by the test itself (not the engine).
UniqueFd PlainListener(const std::string& path) {
  UniqueFd fd = UnixSocket();
  absl::StatusOr<std::unique_ptr<BoundUnixFile>> bound =
      BindUnixSocket(fd.get(), path, Policy{}, {});
  EXPECT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(::listen(fd.get(), 4), 0);
  return fd;
}

TEST(UnixPathSyntax, RelativeNulAndNamelessPathsAreInvalid) {
  EXPECT_TRUE(CheckUnixPathSyntax("/run/x.sock").ok());
  EXPECT_TRUE(CheckUnixPathSyntax("/x").ok());
  EXPECT_TRUE(CheckUnixPathSyntax(std::string("@a\0b", 4)).ok());
  const absl::Status relative = CheckUnixPathSyntax("x.sock");
  EXPECT_EQ(relative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(relative.message(), HasSubstr("'x.sock' is relative"));
  EXPECT_EQ(CheckUnixPathSyntax("./x.sock").code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status nul = CheckUnixPathSyntax(std::string("/tmp/a\0b", 8));
  EXPECT_EQ(nul.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nul.message(), HasSubstr("NUL byte at offset 6"));
  for (const char* bad : {"", "/", "/tmp/", "/tmp/.", "/tmp/.."}) {
    EXPECT_EQ(CheckUnixPathSyntax(bad).code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(CheckUnixPathSyntax("@" + std::string(107, 'a')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckUnixPathSyntax("/" + std::string(kMaxUnixFsPath, 'a')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BoundUnixFile, UnlinksItsOwnSocket) {
  Dir dir;
  UniqueFd sock = UnixSocket();
  auto bound = BindUnixSocket(sock.get(), dir / "s.sock", Policy{}, {});
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_TRUE(IsSocket(dir / "s.sock"));
  EXPECT_EQ((*bound)->Unlink(), BoundUnixFile::UnlinkResult::kRemoved);
  EXPECT_FALSE(Exists(dir / "s.sock"));
  EXPECT_EQ((*bound)->Unlink(), BoundUnixFile::UnlinkResult::kGone);
}

TEST(BoundUnixFile, LeavesAReplacedFileAlone) {
  Dir dir;
  UniqueFd sock = UnixSocket();
  auto bound = BindUnixSocket(sock.get(), dir / "s.sock", Policy{}, {});
  ASSERT_TRUE(bound.ok()) << bound.status();
  ASSERT_EQ(::unlink((dir / "s.sock").c_str()), 0);
  WriteFile(dir / "s.sock", "precious");
  EXPECT_EQ((*bound)->Unlink(), BoundUnixFile::UnlinkResult::kReplaced);
  EXPECT_EQ(ReadFile(dir / "s.sock"), "precious");
  EXPECT_EQ((*bound)->Unlink(), BoundUnixFile::UnlinkResult::kGone);  // Once.

  // Another socket at the name (another inode) is not ours either.
  UniqueFd sock2 = UnixSocket();
  auto bound2 = BindUnixSocket(sock2.get(), dir / "t.sock", Policy{}, {});
  ASSERT_TRUE(bound2.ok()) << bound2.status();
  ASSERT_EQ(::unlink((dir / "t.sock").c_str()), 0);
  UniqueFd other = PlainListener(dir / "t.sock");
  EXPECT_EQ((*bound2)->Unlink(), BoundUnixFile::UnlinkResult::kReplaced);
  EXPECT_TRUE(IsSocket(dir / "t.sock"));
}

TEST(BoundUnixFile, UnlinksInTheDirectoryBoundNotWhereASymlinkPointsNow) {
  Dir dir;
  ASSERT_EQ(::mkdir((dir / "a").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir / "b").c_str(), 0700), 0);
  WriteFile(dir / "b/s.sock", "precious");
  ASSERT_EQ(::symlink("a", (dir / "link").c_str()), 0);
  UniqueFd sock = UnixSocket();
  auto bound = BindUnixSocket(sock.get(), dir / "link/s.sock", Policy{}, {});
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_TRUE(IsSocket(dir / "a/s.sock"));
  ASSERT_EQ(::unlink((dir / "link").c_str()), 0);
  ASSERT_EQ(::symlink("b", (dir / "link").c_str()), 0);
  EXPECT_EQ((*bound)->Unlink(), BoundUnixFile::UnlinkResult::kRemoved);
  EXPECT_FALSE(Exists(dir / "a/s.sock"));
  EXPECT_EQ(ReadFile(dir / "b/s.sock"), "precious");
}

// sun_path holds 107 bytes; the path is bound through the directory's
// descriptor, so only the file name has to fit.
TEST(BindUnixSocket, DeepPathsBindAndConnect) {
  Dir dir;
  std::string deep = dir.path();
  for (int i = 0; deep.size() < 300; ++i) {
    deep += absl::StrCat("/", std::string(40, 'd'), i);
    ASSERT_EQ(::mkdir(deep.c_str(), 0700), 0);
  }
  const std::string path = deep + "/s.sock";
  UniqueFd sock = UnixSocket();
  auto bound = BindUnixSocket(sock.get(), path, Policy{}, {});
  ASSERT_TRUE(bound.ok()) << bound.status();
  ASSERT_EQ(::listen(sock.get(), 4), 0);
  auto target = OpenUnixConnectTarget(path, Policy{});
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(ConnectTo(target->kernel_path), 0);
  EXPECT_EQ((*bound)->Unlink(), BoundUnixFile::UnlinkResult::kRemoved);

  UniqueFd other = UnixSocket();
  auto long_name = BindUnixSocket(
      other.get(), dir / std::string(kMaxUnixSocketName + 1, 'n'), Policy{},
      {});
  EXPECT_EQ(long_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(long_name.status().message(), HasSubstr("at most 85"));
}

TEST(BindUnixSocket, ReplacesOnlyADeadSocket) {
  Dir dir;
  const UnixBindOptions replace{.replace_stale = true};
  {  // A socket whose owner is gone: its file stays behind.
    UniqueFd dead = PlainListener(dir / "stale.sock");
  }
  ASSERT_TRUE(IsSocket(dir / "stale.sock"));
  UniqueFd sock = UnixSocket();
  auto plain = BindUnixSocket(sock.get(), dir / "stale.sock", Policy{}, {});
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kAlreadyExists);
  auto replaced =
      BindUnixSocket(sock.get(), dir / "stale.sock", Policy{}, replace);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  ASSERT_EQ(::listen(sock.get(), 4), 0);
  EXPECT_EQ(ConnectTo(dir / "stale.sock"), 0);

  // A live listener keeps its file and keeps accepting.
  UniqueFd live = PlainListener(dir / "live.sock");
  struct stat before;
  ASSERT_EQ(::lstat((dir / "live.sock").c_str(), &before), 0);
  UniqueFd second = UnixSocket();
  auto refused =
      BindUnixSocket(second.get(), dir / "live.sock", Policy{}, replace);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("a server is listening on"));
  struct stat after;
  ASSERT_EQ(::lstat((dir / "live.sock").c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(ConnectTo(dir / "live.sock"), 0);

  // Anything else is never removed.
  WriteFile(dir / "file.sock", "keep me");
  ASSERT_EQ(::symlink((dir / "stale.sock").c_str(), (dir / "ln.sock").c_str()),
            0);
  auto file =
      BindUnixSocket(second.get(), dir / "file.sock", Policy{}, replace);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(file.status().message(),
              HasSubstr("is a regular file, not a socket: not replaced"));
  EXPECT_EQ(ReadFile(dir / "file.sock"), "keep me");
  auto link = BindUnixSocket(second.get(), dir / "ln.sock", Policy{}, replace);
  EXPECT_THAT(link.status().message(), HasSubstr("is a symbolic link"));
  EXPECT_TRUE(Exists(dir / "ln.sock"));
}

TEST(UnixPolicy, BindIsCheckedOnTheResolvedDirectory) {
  Dir dir;
  ASSERT_EQ(::mkdir((dir / "allowed").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir / "outside").c_str(), 0700), 0);
  ASSERT_EQ(::symlink((dir / "outside").c_str(), (dir / "allowed/esc").c_str()),
            0);
  ASSERT_EQ(::symlink((dir / "allowed").c_str(), (dir / "in").c_str()), 0);
  Policy policy;
  policy.unix_path_prefixes = std::vector<std::string>{dir / "allowed/"};
  UniqueFd sock = UnixSocket();
  auto escaped =
      BindUnixSocket(sock.get(), dir / "allowed/esc/s.sock", policy, {});
  EXPECT_EQ(escaped.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(escaped.status().message(),
            absl::StrCat("bind unix:", dir / "allowed/esc/s.sock",
                         " (resolves to ", dir / "outside/s.sock",
                         ") is not allowed by --allow-unix-paths"));
  EXPECT_FALSE(Exists(dir / "outside/s.sock"));
  // Outside by the string: refused without looking (PermissionDenied, not
  // NotFound, for a directory that does not exist).
  EXPECT_EQ(BindUnixSocket(sock.get(), dir / "nowhere/s.sock", policy, {})
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  // The path as written must be allowed too: a link from outside into the
  // allowed directory is refused before anything is opened.
  auto in = BindUnixSocket(sock.get(), dir / "in/s.sock", policy, {});
  EXPECT_EQ(in.status().message(),
            absl::StrCat("bind unix:", dir / "in/s.sock",
                         " is not allowed by --allow-unix-paths"));
  // A link inside that stays inside is fine.
  ASSERT_EQ(::mkdir((dir / "allowed/sub").c_str(), 0700), 0);
  ASSERT_EQ(::symlink("sub", (dir / "allowed/here").c_str()), 0);
  auto here =
      BindUnixSocket(sock.get(), dir / "allowed/here/s.sock", policy, {});
  ASSERT_TRUE(here.ok()) << here.status();
  EXPECT_TRUE(IsSocket(dir / "allowed/sub/s.sock"));
}

TEST(UnixPolicy, ConnectIsCheckedOnTheSocketItReaches) {
  Dir dir;
  ASSERT_EQ(::mkdir((dir / "allowed").c_str(), 0700), 0);
  UniqueFd outside = PlainListener(dir / "outside.sock");
  UniqueFd inside = PlainListener(dir / "allowed/in.sock");
  ASSERT_EQ(::symlink((dir / "outside.sock").c_str(),
                      (dir / "allowed/l.sock").c_str()),
            0);
  Policy policy;
  policy.unix_path_prefixes = std::vector<std::string>{dir / "allowed/"};
  auto escaped = OpenUnixConnectTarget(dir / "allowed/l.sock", policy);
  EXPECT_EQ(escaped.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(escaped.status().message(),
              HasSubstr(absl::StrCat("(resolves to ", dir / "outside.sock",
                                     ") is not allowed")));
  auto ok = OpenUnixConnectTarget(dir / "allowed/in.sock", policy);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ConnectTo(ok->kernel_path), 0);
}

TEST(UnixPolicy, PrefixWithASymlinkedDirectoryStillMatches) {
  Dir dir;
  ASSERT_EQ(::mkdir((dir / "real").c_str(), 0700), 0);
  ASSERT_EQ(::symlink((dir / "real").c_str(), (dir / "alias").c_str()), 0);
  Policy policy;  // Written the way /var/run/... often is: through a link.
  policy.unix_path_prefixes = std::vector<std::string>{dir / "alias/"};
  UniqueFd sock = UnixSocket();
  auto bound = BindUnixSocket(sock.get(), dir / "alias/s.sock", policy, {});
  EXPECT_TRUE(bound.ok()) << bound.status();
}

}  // namespace
}  // namespace sockagent
