// OpenBeneath: opens a file for reading strictly below a directory, so a
// request that names a path under --allow-tls-paths can never read a file
// outside it, whatever ".." or symlinks the path (or a concurrent writer of
// the directory) puts in the way.
//
// Two ways, one contract (RESOLVE_BENEATH's):
//   - openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: the kernel
//     resolves and opens in one step (Linux 5.6 and later).
//   - Where openat2 is missing (ENOSYS) or filtered (EPERM under an old
//     container seccomp profile): a walk, one component at a time, each
//     opened with O_NOFOLLOW relative to the directory fd before it. A
//     symlink is read with readlinkat and its target walked the same way
//     from where it stands; ".." pops one level and may not pop above the
//     starting directory. No step follows a name the walk did not read, so
//     a symlink swapped in between two steps fails the open (ELOOP or
//     ENOTDIR) rather than redirecting it.
// Either way, leaving the directory (by "..", an absolute symlink or a
// symlink pointing out) fails with EXDEV.
//
// Returns an fd opened O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY (a FIFO
// never blocks the open), or -1 with errno.
//
//   int fd = OpenBeneath(dir_fd, "certs/leaf.pem");
#ifndef SOCKAGENT_SERVICE_OPEN_BENEATH_H_
#define SOCKAGENT_SERVICE_OPEN_BENEATH_H_

#include <string>

namespace sockagent {

// `relative` may not be absolute (EXDEV) nor hold a NUL (EINVAL).
int OpenBeneath(int dir_fd, const std::string& relative);

// The walk alone (what OpenBeneath does without openat2); tests run the
// same cases through both.
int OpenBeneathByWalk(int dir_fd, const std::string& relative);

// Tests: makes OpenBeneath take the walk as if openat2 were missing.
void ForceOpenBeneathWalkForTesting(bool on);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_OPEN_BENEATH_H_
