// StartServer's TLS certificate and key paths (--allow-tls-paths): the agent
// runs as root, so a path is a request to read a file on the host. Only
// regular files below an allowed directory are read; ".." and symlinks may
// not lead out (openat2 RESOLVE_BENEATH); a FIFO does not block; and a path
// outside every directory is refused without touching the filesystem, so
// the answer says nothing of what exists there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/convert.h"
#include "tests/support/files.h"
#include "tests/support/tls_peer.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

class TlsPaths : public ::testing::Test {
 protected:
  void SetUp() override {
    allowed_ = dir_.path() + "/allowed";
    ASSERT_EQ(::mkdir(allowed_.c_str(), 0700), 0);
    WriteFile(allowed_ + "/leaf.pem", pki_.Pem("leaf.pem"));
    WriteFile(allowed_ + "/leaf.key", pki_.Pem("leaf.key"));
    WriteFile(dir_.path() + "/outside.key", pki_.Pem("other.key"));
  }

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

TEST_F(TlsPaths, FilesBelowTheDirectoryAreRead) {
  EXPECT_TRUE(Load(allowed_ + "/leaf.pem", allowed_ + "/leaf.key").ok());
  // A symlink that stays below the directory is fine.
  ASSERT_EQ(::mkdir((allowed_ + "/live").c_str(), 0700), 0);
  ASSERT_EQ(::symlink("../leaf.key", (allowed_ + "/live/key.pem").c_str()), 0);
  EXPECT_TRUE(Load(allowed_ + "/leaf.pem", allowed_ + "/live/key.pem").ok());
}

TEST_F(TlsPaths, OutsideEveryDirectoryIsRefusedAlikeWhetherItExistsOrNot) {
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

TEST_F(TlsPaths, DotDotAndSymlinksCannotLeadOut) {
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

TEST_F(TlsPaths, FifosDirectoriesAndHugeFilesAreRefusedAtOnce) {
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

TEST_F(TlsPaths, RelativeAndEmptyPathsAreInvalid) {
  for (const std::string& key :
       {std::string("leaf.key"), std::string("./leaf.key"),
        std::string("a\0b", 3)}) {
    const absl::Status s = Load(allowed_ + "/leaf.pem", key);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr("must be an absolute path"));
  }
}

}  // namespace
}  // namespace sockagent::testing
