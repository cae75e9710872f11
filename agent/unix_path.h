// UNIX socket paths, handled so that the agent (root on most hosts) binds,
// connects and removes exactly the object it checked, never one a symlink
// or a rename put in its place.
//
// - A filesystem path must be absolute and free of NUL bytes; abstract
//   names ("@...") may hold any byte (CheckUnixPathSyntax).
// - Binding: the parent directory is opened once (O_PATH|O_DIRECTORY), its
//   real path read back from /proc/self/fd/N and checked against the
//   policy, and the socket bound as /proc/self/fd/N/NAME (Linux has no
//   bindat): the check and the bind see the same directory whatever happens
//   to the path's symlinks meanwhile. This form is short, so deep paths
//   (beyond sun_path's 107 bytes) bind too; only NAME is limited
//   (kMaxUnixSocketName).
// - Connecting: the socket file is opened with O_PATH (following symlinks),
//   its real path checked, and the connect goes to /proc/self/fd/M: the
//   inode that was checked.
// - Removing: only the socket this process bound (device + inode recorded
//   right after bind), relative to the directory fd, and only while that
//   name still holds that very inode (BoundUnixFile).
// - Replacing a stale socket (BindOptions::replace_stale): only a socket
//   file, only when connecting to it is refused (nobody listens).
//
//   UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
//   absl::StatusOr<std::unique_ptr<BoundUnixFile>> bound =
//       BindUnixSocket(sock.get(), "/run/x/s.sock", policy, {});
//   ...
//   (*bound)->Unlink();  // Only if /run/x/s.sock is still our socket.
//
// Blocking filesystem syscalls (open, stat, bind, unlink); any thread. No
// Asio.
#ifndef SOCKAGENT_AGENT_UNIX_PATH_H_
#define SOCKAGENT_AGENT_UNIX_PATH_H_

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/policy.h"

namespace sockagent {

// Longest filesystem path accepted (PATH_MAX without its NUL).
inline constexpr size_t kMaxUnixFsPath = 4095;
// Longest file name (last component) a UNIX server can bind: it is bound as
// /proc/self/fd/N/NAME, which must fit in sun_path's 107 bytes with N of up
// to 7 digits (descriptors below 10,000,000).
inline constexpr size_t kMaxUnixSocketName = 85;

// A file descriptor, closed by the destructor. Movable.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

inline bool IsAbstractUnixPath(absl::string_view path) {
  return !path.empty() && path.front() == '@';
}

// InvalidArgument, with a message saying why, unless `path` is an abstract
// name ("@" + at most 106 bytes, any bytes) or an absolute filesystem path
// of at most kMaxUnixFsPath bytes without NUL, whose last component is a
// file name (not empty, ".", or "..").
absl::Status CheckUnixPathSyntax(absl::string_view path);

// "/proc/self/fd/N": what the kernel resolves to the file `fd` refers to.
std::string ProcFdPath(int fd);

// A UNIX socket file this process bound. Unlink() removes it only while its
// name still holds the very inode bound; the directory is held open (one
// descriptor) until then.
class BoundUnixFile {
 public:
  BoundUnixFile(UniqueFd dir, std::string name, dev_t dev, ino_t ino)
      : dir_(std::move(dir)), name_(std::move(name)), dev_(dev), ino_(ino) {}

  enum class UnlinkResult {
    kRemoved,   // It was ours: unlinked.
    kGone,      // Nothing by that name any more.
    kReplaced,  // Another file has the name now: left alone.
  };
  // Once; later calls return kGone. Closes the directory descriptor.
  UnlinkResult Unlink();

 private:
  UniqueFd dir_;
  std::string name_;
  dev_t dev_;
  ino_t ino_;
};

struct UnixBindOptions {
  // An existing socket file nobody listens on (connect is refused: its owner
  // is gone, e.g. killed) is removed and the path bound. A live listener, or
  // anything that is not a socket, is AlreadyExists, untouched.
  bool replace_stale = false;
};

// Binds the AF_UNIX socket `sock` to `path` (syntax already checked) after
// checking the path against policy.unix_path_prefixes ("bind"). For a
// filesystem path, returns the file to remove later; for an abstract name,
// nullptr (the kernel frees it with the socket). Errors name "bind
// unix:PATH": AlreadyExists when something has the name, PermissionDenied
// for the policy (naming the resolved path), NotFound for a missing
// directory.
absl::StatusOr<std::unique_ptr<BoundUnixFile>> BindUnixSocket(
    int sock, absl::string_view path, const Policy& policy,
    const UnixBindOptions& options);

// Where to connect for `path` (syntax already checked): an abstract name as
// is, or a filesystem path opened with O_PATH and checked against the
// policy by its real path ("connect").
struct UnixConnectTarget {
  // Keep it open until connect() has been called on `kernel_path`.
  UniqueFd file;
  // What to give connect(): "@name" (abstract) or "/proc/self/fd/M".
  std::string kernel_path;
};
absl::StatusOr<UnixConnectTarget> OpenUnixConnectTarget(absl::string_view path,
                                                        const Policy& policy);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_UNIX_PATH_H_
