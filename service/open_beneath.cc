// OpenBeneath (service/open_beneath.h): openat2 RESOLVE_BENEATH, or a
// component-by-component walk with the same contract.
#include "service/open_beneath.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <vector>

#include "absl/strings/str_split.h"

namespace sockagent {

namespace {

constexpr int kReadFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
// As the kernel's own bound on symlinks in one lookup (MAXSYMLINKS).
constexpr int kMaxSymlinks = 40;
// Directories the walk may be inside at once (it holds an fd for each):
// symlinks could otherwise lead it through a bind-mount loop 40 times
// PATH_MAX components deep, holding thousands of the daemon's fds.
constexpr size_t kMaxDepth = 256;

std::atomic<bool> force_walk{false};

// Pushes the components of `path` to the front of `todo`, in order.
void PushFront(const std::string& path, std::deque<std::string>* todo) {
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    todo->push_front(std::move(*it));
  }
}

// Directory fds the walk entered below the starting one; closed on every
// way out, errno kept.
class DirStack {
 public:
  explicit DirStack(int base) : base_(base) {}
  ~DirStack() {
    const int saved = errno;
    for (int fd : fds_) ::close(fd);
    errno = saved;
  }
  int top() const { return fds_.empty() ? base_ : fds_.back(); }
  bool at_base() const { return fds_.empty(); }
  size_t depth() const { return fds_.size(); }
  void Push(int fd) { fds_.push_back(fd); }
  void Pop() {
    ::close(fds_.back());
    fds_.pop_back();
  }

 private:
  int base_;
  std::vector<int> fds_;
};

int Fail(int e) {
  errno = e;
  return -1;
}

}  // namespace

int OpenBeneathByWalk(int dir_fd, const std::string& relative) {
  if (relative.empty()) return Fail(ENOENT);
  if (relative[0] == '/') return Fail(EXDEV);
  // A component "..\0" would pass as a name and open as "..".
  if (relative.find('\0') != std::string::npos) return Fail(EINVAL);
  DirStack dirs(dir_fd);
  std::deque<std::string> todo;
  PushFront(relative, &todo);
  int links = 0;
  while (!todo.empty()) {
    const std::string name = std::move(todo.front());
    todo.pop_front();
    if (name.empty() || name == ".") continue;
    if (name == "..") {
      if (dirs.at_base()) return Fail(EXDEV);
      dirs.Pop();
      continue;
    }
    // Never follows: a symlink is read below and walked by us.
    if (todo.empty()) {
      const int fd =
          ::openat(dirs.top(), name.c_str(), kReadFlags | O_NOFOLLOW);
      if (fd >= 0) return fd;
      if (errno != ELOOP) return -1;
    } else {
      const int fd = ::openat(dirs.top(), name.c_str(),
                              O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        if (dirs.depth() >= kMaxDepth) {
          ::close(fd);
          return Fail(ELOOP);
        }
        dirs.Push(fd);
        continue;
      }
      if (errno != ENOTDIR && errno != ELOOP) return -1;
    }
    char target[PATH_MAX];
    const ssize_t n =
        ::readlinkat(dirs.top(), name.c_str(), target, sizeof target);
    if (n < 0) {
      // Not a symlink (EINVAL): a file where a directory was wanted, or a
      // symlink that was swapped for something else since the open.
      return Fail(errno == EINVAL ? (todo.empty() ? ELOOP : ENOTDIR) : errno);
    }
    if (static_cast<size_t>(n) >= sizeof target) return Fail(ENAMETOOLONG);
    if (++links > kMaxSymlinks) return Fail(ELOOP);
    if (n == 0) return Fail(ENOENT);
    if (target[0] == '/') return Fail(EXDEV);
    PushFront(std::string(target, static_cast<size_t>(n)), &todo);
  }
  // The path named a directory ("dir/", "dir/.."): opened as such, so the
  // caller's check for a regular file refuses it.
  return ::openat(dirs.top(), ".", kReadFlags);
}

int OpenBeneath(int dir_fd, const std::string& relative) {
  if (relative.find('\0') != std::string::npos) return Fail(EINVAL);
  if (!force_walk.load(std::memory_order_relaxed)) {
    struct open_how how {};
    how.flags = kReadFlags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    const int fd = static_cast<int>(
        ::syscall(SYS_openat2, dir_fd, relative.c_str(), &how, sizeof how));
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
  }
  return OpenBeneathByWalk(dir_fd, relative);
}

void ForceOpenBeneathWalkForTesting(bool on) {
  force_walk.store(on, std::memory_order_relaxed);
}

}  // namespace sockagent
