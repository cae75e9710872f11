#include "agent/unix_path.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/net_error.h"
#include "agent/quote.h"

namespace sockagent {

namespace {

// sun_path minus the NUL a filesystem path needs (and, for an abstract
// name, minus nothing: its leading NUL is the '@').
constexpr size_t kSunPathBytes = sizeof(sockaddr_un::sun_path) - 1;

absl::Status Errno(absl::string_view what, int err) {
  return ErrorStatus(what, std::error_code(err, std::system_category()));
}

std::string ErrnoText(int err) {
  return ErrorText(std::error_code(err, std::system_category()));
}

// "/a/b/c" -> "/a/b" and "c"; "/c" -> "/" and "c".
void SplitPath(absl::string_view path, std::string* dir, std::string* name) {
  const size_t slash = path.rfind('/');
  *dir = slash == 0 ? "/" : std::string(path.substr(0, slash));
  *name = std::string(path.substr(slash + 1));
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return dir == "/" ? absl::StrCat("/", name) : absl::StrCat(dir, "/", name);
}

// The path the kernel has for what `fd` refers to.
absl::StatusOr<std::string> FdRealPath(int fd, absl::string_view where) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(ProcFdPath(fd).c_str(), buf, sizeof(buf));
  if (n < 0)
    return Errno(absl::StrCat(where, ": reading its real path"), errno);
  if (static_cast<size_t>(n) >= sizeof(buf)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": its real path is longer than PATH_MAX"));
  }
  return std::string(buf, static_cast<size_t>(n));
}

const char* FileKind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a file of unknown type";
}

bool SameSocket(const struct stat& a, const struct stat& b) {
  return S_ISSOCK(a.st_mode) && S_ISSOCK(b.st_mode) && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

// `kernel_path`: "@name" (abstract) or a filesystem path of at most
// kSunPathBytes.
socklen_t FillSockaddr(absl::string_view kernel_path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, kernel_path.data(), kernel_path.size());
  size_t length = offsetof(sockaddr_un, sun_path) + kernel_path.size();
  if (IsAbstractUnixPath(kernel_path)) {
    addr->sun_path[0] = '\0';
  } else {
    length += 1;
  }
  return static_cast<socklen_t>(length);
}

int BindTo(int sock, absl::string_view kernel_path) {
  sockaddr_un addr;
  const socklen_t length = FillSockaddr(kernel_path, &addr);
  return ::bind(sock, reinterpret_cast<const sockaddr*>(&addr), length);
}

// `name` in `dir` exists and bind said EADDRINUSE: removes it if it is a
// socket nobody listens on. OK means "bind again".
absl::Status RemoveStaleSocket(int dir, const std::string& name,
                               absl::string_view path,
                               absl::string_view where) {
  struct stat before;
  if (::fstatat(dir, name.c_str(), &before, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // Gone meanwhile.
    return Errno(where, errno);
  }
  if (!S_ISSOCK(before.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat(where, ": ", path, " exists and is ",
                     FileKind(before.st_mode), ", not a socket: not replaced"));
  }
  // Pin the inode, then ask it: a listener accepts, a dead one refuses.
  UniqueFd file(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat pinned;
  if (!file.valid() || ::fstat(file.get(), &pinned) != 0 ||
      !SameSocket(before, pinned)) {
    return absl::AlreadyExistsError(absl::StrCat(
        where, ": ", path, " changed while it was checked: not replaced"));
  }
  UniqueFd probe(
      ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.valid())
    return Errno(absl::StrCat(where, ": probe socket"), errno);
  sockaddr_un addr;
  const socklen_t length = FillSockaddr(ProcFdPath(file.get()), &addr);
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr),
                length) == 0 ||
      errno == EAGAIN || errno == EINPROGRESS) {
    return absl::AlreadyExistsError(absl::StrCat(
        where, ": a server is listening on ", path, ": not replaced"));
  }
  if (errno != ECONNREFUSED) {
    return absl::AlreadyExistsError(absl::StrCat(
        where, ": ", path, " is a socket in use (probe: ", ErrnoText(errno),
        "): not replaced"));
  }
  // Stale. Remove the name only while it still holds the inode probed.
  struct stat now;
  if (::fstatat(dir, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Errno(where, errno);
  }
  if (!SameSocket(before, now)) {
    return absl::AlreadyExistsError(absl::StrCat(
        where, ": ", path, " changed while it was checked: not replaced"));
  }
  if (::unlinkat(dir, name.c_str(), 0) != 0 && errno != ENOENT) {
    return Errno(absl::StrCat(where, ": removing the stale socket"), errno);
  }
  return absl::OkStatus();
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string ProcFdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

absl::Status CheckUnixPathSyntax(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("unix path is empty");
  if (IsAbstractUnixPath(path)) {
    if (path.size() > kSunPathBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "abstract unix name is ", path.size(),
          " bytes with its '@'; at most ", kSunPathBytes, " fit in sun_path"));
    }
    return absl::OkStatus();  // Any bytes, NUL included.
  }
  if (const size_t nul = path.find('\0'); nul != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix path has a NUL byte at offset ", nul,
                     " (only abstract names, '@...', may contain NUL)"));
  }
  if (path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "unix path ", QuoteInput(path),
        " is relative: give an absolute path (or '@name' for the abstract "
        "namespace)"));
  }
  if (path.size() > kMaxUnixFsPath) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unix path is ", path.size(), " bytes; at most ", kMaxUnixFsPath));
  }
  const absl::string_view name = path.substr(path.rfind('/') + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("unix path '", path, "' does not end in a file name"));
  }
  return absl::OkStatus();
}

BoundUnixFile::UnlinkResult BoundUnixFile::Unlink() {
  if (!dir_.valid()) return UnlinkResult::kGone;
  UnlinkResult result = UnlinkResult::kGone;
  struct stat st;
  if (::fstatat(dir_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode) || st.st_dev != dev_ || st.st_ino != ino_) {
      result = UnlinkResult::kReplaced;
    } else if (::unlinkat(dir_.get(), name_.c_str(), 0) == 0) {
      result = UnlinkResult::kRemoved;
    }
  }
  dir_.reset();
  return result;
}

absl::StatusOr<std::unique_ptr<BoundUnixFile>> BindUnixSocket(
    int sock, absl::string_view path, const Policy& policy,
    const UnixBindOptions& options) {
  if (absl::Status s = CheckUnixPathSyntax(path); !s.ok()) return s;
  const std::string where = absl::StrCat("bind unix:", path);
  if (IsAbstractUnixPath(path)) {
    if (absl::Status s = policy.CheckUnixPath("bind", path); !s.ok()) return s;
    if (BindTo(sock, path) != 0) return Errno(where, errno);
    return nullptr;  // The kernel frees an abstract name with its socket.
  }
  // As written first: nothing outside the policy is even opened.
  if (absl::Status s = policy.CheckUnixPath("bind", path); !s.ok()) return s;
  std::string dir_path, name;
  SplitPath(path, &dir_path, &name);
  if (name.size() > kMaxUnixSocketName) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the file name is ", name.size(),
                     " bytes; a UNIX server's socket name may have at most ",
                     kMaxUnixSocketName));
  }
  UniqueFd dir(::open(dir_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return Errno(where, errno);
  absl::StatusOr<std::string> real_dir = FdRealPath(dir.get(), where);
  if (!real_dir.ok()) return real_dir.status();
  if (absl::Status s =
          policy.CheckUnixPath("bind", path, JoinPath(*real_dir, name));
      !s.ok()) {
    return s;
  }
  // Bound in the very directory just checked, whatever the path's symlinks
  // point at by now; a symlink as the last component is never followed by
  // bind (EADDRINUSE).
  const std::string kernel_path = JoinPath(ProcFdPath(dir.get()), name);
  if (kernel_path.size() > kSunPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", kernel_path, " does not fit in sun_path"));
  }
  if (BindTo(sock, kernel_path) != 0) {
    if (errno != EADDRINUSE || !options.replace_stale) {
      return Errno(where, errno);
    }
    if (absl::Status s = RemoveStaleSocket(dir.get(), name, path, where);
        !s.ok()) {
      return s;
    }
    if (BindTo(sock, kernel_path) != 0) return Errno(where, errno);
  }
  struct stat st;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISSOCK(st.st_mode)) {
    // Replaced between bind and here: what is there now is not ours, and
    // the socket (closed by the caller) leaves no file of ours behind.
    return absl::AbortedError(
        absl::StrCat(where, ": the socket file was replaced right after bind"));
  }
  return std::make_unique<BoundUnixFile>(std::move(dir), std::move(name),
                                         st.st_dev, st.st_ino);
}

absl::StatusOr<UnixConnectTarget> OpenUnixConnectTarget(absl::string_view path,
                                                        const Policy& policy) {
  if (absl::Status s = CheckUnixPathSyntax(path); !s.ok()) return s;
  UnixConnectTarget target;
  if (IsAbstractUnixPath(path)) {
    if (absl::Status s = policy.CheckUnixPath("connect", path); !s.ok()) {
      return s;
    }
    target.kernel_path = std::string(path);
    return target;
  }
  if (absl::Status s = policy.CheckUnixPath("connect", path); !s.ok()) {
    return s;
  }
  const std::string where = absl::StrCat("connect unix:", path);
  // O_PATH opens nothing (a FIFO or device has no side effect) and follows
  // symlinks: the real path read back is the object connect will reach.
  target.file.reset(::open(std::string(path).c_str(), O_PATH | O_CLOEXEC));
  if (!target.file.valid()) return Errno(where, errno);
  absl::StatusOr<std::string> real = FdRealPath(target.file.get(), where);
  if (!real.ok()) return real.status();
  if (absl::Status s = policy.CheckUnixPath("connect", path, *real); !s.ok()) {
    return s;
  }
  target.kernel_path = ProcFdPath(target.file.get());
  return target;
}

}  // namespace sockagent
