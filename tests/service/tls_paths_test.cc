// StartServer's TLS certificate and key paths (--allow-tls-paths): the agent
// runs as root, so a path is a request to read a file on the host. Only
// regular files below an allowed directory are read; ".." and symlinks may
// not lead out (openat2 RESOLVE_BENEATH, or the walk that stands in for it
// without openat2: every case runs both ways); a FIFO does not block; and a
// path outside every directory is refused without touching the filesystem,
// so the answer says nothing of what exists there.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/convert.h"
#include "service/open_beneath.h"
#include "tests/support/files.h"
#include "tests/support/tls_peer.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

// The parameter: whether OpenBeneath takes the walk (as on a kernel
// without openat2).
class TlsPaths : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ForceOpenBeneathWalkForTesting(GetParam());
    allowed_ = dir_.path() + "/allowed";
    ASSERT_EQ(::mkdir(allowed_.c_str(), 0700), 0);
    WriteFile(allowed_ + "/leaf.pem", pki_.Pem("leaf.pem"));
    WriteFile(allowed_ + "/leaf.key", pki_.Pem("leaf.key"));
    WriteFile(dir_.path() + "/outside.key", pki_.Pem("other.key"));
  }

  void TearDown() override { ForceOpenBeneathWalkForTesting(false); }

  absl::Status Load(const std::string& cert, const std::string& key,
                    std::vector<std::string> dirs = {}) {
    v1::TlsServerOptions options;
    options.set_certificate_chain_path(cert);
    options.set_private_key_path(key);
    if (dirs.empty()) dirs = {allowed_};
    return TlsServerFromProto(options, dirs).status();
  }

  Pki pki_;
  TempDir dir_;
  std::string allowed_;
};

TEST_P(TlsPaths, FilesBelowTheDirectoryAreRead) {
  EXPECT_TRUE(Load(allowed_ + "/leaf.pem", allowed_ + "/leaf.key").ok());
  // A symlink that stays below the directory is fine.
  ASSERT_EQ(::mkdir((allowed_ + "/live").c_str(), 0700), 0);
  ASSERT_EQ(::symlink("../leaf.key", (allowed_ + "/live/key.pem").c_str()), 0);
  EXPECT_TRUE(Load(allowed_ + "/leaf.pem", allowed_ + "/live/key.pem").ok());
}

TEST_P(TlsPaths, OutsideEveryDirectoryIsRefusedAlikeWhetherItExistsOrNot) {
  const absl::Status exists =
      Load(allowed_ + "/leaf.pem", dir_.path() + "/outside.key");
  const absl::Status missing =
      Load(allowed_ + "/leaf.pem", dir_.path() + "/no-such.key");
  EXPECT_EQ(exists.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(missing.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(exists.message(),
              HasSubstr("is not under a directory --allow-tls-paths names"));
  EXPECT_THAT(missing.message(),
              HasSubstr("is not under a directory --allow-tls-paths names"));
  // A sibling whose name starts like the directory is outside it.
  ASSERT_EQ(::mkdir((allowed_ + "-not").c_str(), 0700), 0);
  WriteFile(allowed_ + "-not/leaf.key", pki_.Pem("leaf.key"));
  EXPECT_EQ(Load(allowed_ + "/leaf.pem", allowed_ + "-not/leaf.key").code(),
            absl::StatusCode::kPermissionDenied);
  // Inside a directory, a missing file is just missing.
  const absl::Status inside = Load(allowed_ + "/leaf.pem", allowed_ + "/x.key");
  EXPECT_EQ(inside.code(), absl::StatusCode::kNotFound) << inside;
  EXPECT_THAT(inside.message(), HasSubstr("tls.private_key_path"));
}

TEST_P(TlsPaths, DotDotAndSymlinksCannotLeadOut) {
  const absl::Status dots =
      Load(allowed_ + "/leaf.pem", allowed_ + "/../outside.key");
  EXPECT_EQ(dots.code(), absl::StatusCode::kPermissionDenied) << dots;
  EXPECT_THAT(dots.message(), HasSubstr("leads out of " + allowed_));

  ASSERT_EQ(::symlink((dir_.path() + "/outside.key").c_str(),
                      (allowed_ + "/abs.key").c_str()),
            0);
  ASSERT_EQ(::symlink("../outside.key", (allowed_ + "/rel.key").c_str()), 0);
  ASSERT_EQ(::symlink("/etc", (allowed_ + "/etc").c_str()), 0);
  for (const std::string& key :
       {allowed_ + "/abs.key", allowed_ + "/rel.key", allowed_ + "/etc/shadow",
        allowed_ + "/etc/passwd"}) {
    const absl::Status s = Load(allowed_ + "/leaf.pem", key);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied)
        << key << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("leads out of")) << key;
    // Never the contents of what it pointed at.
    EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("root:")));
  }
}

TEST_P(TlsPaths, FifosDirectoriesAndHugeFilesAreRefusedAtOnce) {
  ASSERT_EQ(::mkfifo((allowed_ + "/fifo.key").c_str(), 0600), 0);
  const absl::Time start = absl::Now();
  absl::Status s = Load(allowed_ + "/leaf.pem", allowed_ + "/fifo.key");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // No writer: no block.
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("is not a regular file"));

  ASSERT_EQ(::mkdir((allowed_ + "/dir.key").c_str(), 0700), 0);
  s = Load(allowed_ + "/leaf.pem", allowed_ + "/dir.key");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("is not a regular file"));

  WriteFile(allowed_ + "/huge.pem", std::string(kMaxTlsPemBytes + 1, 'A'));
  s = Load(allowed_ + "/huge.pem", allowed_ + "/leaf.key");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("-byte bound"));
}

TEST_P(TlsPaths, RelativeAndEmptyPathsAreInvalid) {
  for (const std::string& key :
       {std::string("leaf.key"), std::string("./leaf.key"),
        std::string("a\0b", 3)}) {
    const absl::Status s = Load(allowed_ + "/leaf.pem", key);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr("must be an absolute path"));
  }
}

TEST_P(TlsPaths, DotDotThatStaysBelowAndSymlinkChainsAreFollowed) {
  ASSERT_EQ(::mkdir((allowed_ + "/a").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((allowed_ + "/a/b").c_str(), 0700), 0);
  EXPECT_TRUE(
      Load(allowed_ + "/a/b/../../leaf.pem", allowed_ + "/leaf.key").ok());
  // A link to a directory link to the file, all below the directory.
  ASSERT_EQ(::symlink("a/b", (allowed_ + "/ab").c_str()), 0);
  ASSERT_EQ(::symlink("../../leaf.key", (allowed_ + "/a/b/k").c_str()), 0);
  EXPECT_TRUE(Load(allowed_ + "/leaf.pem", allowed_ + "/ab/k").ok());
  // One ".." too many, through a link.
  ASSERT_EQ(::symlink("../../../outside.key", (allowed_ + "/a/b/out").c_str()),
            0);
  EXPECT_EQ(Load(allowed_ + "/leaf.pem", allowed_ + "/ab/out").code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_P(TlsPaths, ASymlinkLoopIsRefused) {
  ASSERT_EQ(::symlink("loop2", (allowed_ + "/loop1").c_str()), 0);
  ASSERT_EQ(::symlink("loop1", (allowed_ + "/loop2").c_str()), 0);
  const absl::Status s = Load(allowed_ + "/leaf.pem", allowed_ + "/loop1");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
}

INSTANTIATE_TEST_SUITE_P(Openers, TlsPaths, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Walk" : "Openat2";
                         });

// The window the old fallback (realpath, then open) had: a directory in the
// path swapped for a symlink that points out, between the check and the
// open. A thread swaps them as fast as it can while the walk opens the path
// until each state was met 500 times (at most 200,000 opens): every open
// reads the inside file or fails; none reads the outside one.
TEST(OpenBeneathWalk, ADirectorySwappedForAnOutwardSymlinkNeverLeadsOut) {
  TempDir dir;
  const std::string allowed = dir.path() + "/allowed";
  ASSERT_EQ(::mkdir(allowed.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir.path() + "/outside").c_str(), 0700), 0);
  WriteFile(dir.path() + "/outside/key.pem", "SECRET");
  ASSERT_EQ(::mkdir((allowed + "/sub").c_str(), 0700), 0);
  WriteFile(allowed + "/sub/key.pem", "inside");
  ASSERT_EQ(::symlink("../outside", (allowed + "/alt").c_str()), 0);
  const int dir_fd = ::open(allowed.c_str(), O_PATH | O_DIRECTORY);
  ASSERT_GE(dir_fd, 0);
  absl::Cleanup close_dir = [dir_fd] { ::close(dir_fd); };
  // Two swaps back to the start: the filesystem must support the exchange.
  for (int i = 0; i < 2; ++i) {
    if (::renameat2(AT_FDCWD, (allowed + "/sub").c_str(), AT_FDCWD,
                    (allowed + "/alt").c_str(), RENAME_EXCHANGE) != 0) {
      GTEST_SKIP() << "renameat2(RENAME_EXCHANGE): " << std::strerror(errno);
    }
  }

  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    while (!stop.load()) {
      if (::renameat2(AT_FDCWD, (allowed + "/sub").c_str(), AT_FDCWD,
                      (allowed + "/alt").c_str(), RENAME_EXCHANGE) == 0) {
        ++swaps;
      }
    }
  });
  absl::Cleanup join = [&] {
    stop = true;
    swapper.join();
  };
  int inside = 0;
  int failed = 0;
  bool escaped = false;
  for (int i = 0; i < 200000 && (inside < 500 || failed < 500); ++i) {
    const int fd = OpenBeneathByWalk(dir_fd, "sub/key.pem");
    if (fd < 0) {
      ++failed;
      EXPECT_TRUE(errno == EXDEV || errno == ELOOP || errno == ENOTDIR ||
                  errno == ENOENT)
          << errno;
      continue;
    }
    char buf[16] = {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    const std::string got(buf, n > 0 ? static_cast<size_t>(n) : 0);
    if (got != "inside") {
      escaped = true;
      ADD_FAILURE() << "read \"" << got << "\" through the swapped path";
      break;
    }
    ++inside;
  }
  std::move(join).Invoke();
  EXPECT_FALSE(escaped);
  // Both states were seen, or the test proved nothing.
  EXPECT_GT(swaps.load(), 0);
  EXPECT_GE(inside, 500);
  EXPECT_GE(failed, 500);
}

// A NUL inside the path would let "..\0" pass as a name; such a path is
// refused whole, either way.
TEST(OpenBeneathWalk, ANulInThePathIsRefused) {
  TempDir dir;
  const int dir_fd = ::open(dir.path().c_str(), O_PATH | O_DIRECTORY);
  ASSERT_GE(dir_fd, 0);
  const std::string path("..\0/x", 5);
  EXPECT_EQ(OpenBeneathByWalk(dir_fd, path), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(OpenBeneath(dir_fd, path), -1);
  EXPECT_EQ(errno, EINVAL);
  ::close(dir_fd);
}

}  // namespace
}  // namespace sockagent::testing
