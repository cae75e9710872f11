#include "tests/support/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/support/spawn.h"

extern char** environ;

namespace sockagent::testing {
namespace {

struct Pipe {
  int read = -1;
  int write = -1;
};

Pipe MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {};
  return {fds[0], fds[1]};
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int in_fd,
                            int out_fd, int err_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  // The child starts with default signal dispositions and an empty mask,
  // whatever the test process blocked.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("spawn ", absl::StrJoin(argv, " "), ": ", strerror(rc)));
  }
  return pid;
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& input, absl::Duration timeout) {
  CommandResult result;
  Pipe in = MakePipe(), out = MakePipe(), err = MakePipe();
  auto pid = Spawn(argv, in.read, out.write, err.write);
  CloseFd(in.read);
  CloseFd(out.write);
  CloseFd(err.write);
  if (!pid.ok()) {
    result.err = std::string(pid.status().message());
    CloseFd(in.write);
    CloseFd(out.read);
    CloseFd(err.read);
    return result;
  }
  fcntl(in.write, F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (input.empty()) CloseFd(in.write);
  const absl::Time deadline = absl::Now() + timeout;
  char buf[65536];
  while (out.read >= 0 || err.read >= 0) {
    pollfd fds[3] = {
        {out.read, POLLIN, 0}, {err.read, POLLIN, 0}, {in.write, POLLOUT, 0}};
    int left =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0) {
      result.timed_out = true;
      kill(*pid, SIGKILL);
      break;
    }
    if (poll(fds, 3, left) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buf, n);
      } else {
        CloseFd(i == 0 ? out.read : err.read);
      }
    }
    if (in.write >= 0 && (fds[2].revents & (POLLOUT | POLLERR))) {
      ssize_t n =
          write(in.write, input.data() + written, input.size() - written);
      if (n > 0) written += n;
      if (n < 0 && errno != EAGAIN) written = input.size();
      if (written == input.size()) CloseFd(in.write);
    }
  }
  CloseFd(in.write);
  CloseFd(out.read);
  CloseFd(err.read);
  int status = 0;
  waitpid(*pid, &status, 0);
  if (!result.timed_out && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv) {
  Pipe out = MakePipe(), err = MakePipe();
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  auto pid = Spawn(argv, devnull, out.write, err.write);
  close(devnull);
  CloseFd(out.write);
  CloseFd(err.write);
  if (!pid.ok()) {
    CloseFd(out.read);
    CloseFd(err.read);
    return pid.status();
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = *pid;
  child->out_fd_ = out.read;
  child->err_fd_ = err.read;
  fcntl(child->err_fd_, F_SETFL, O_NONBLOCK);
  return child;
}

ChildProcess::~ChildProcess() {
  if (!exited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  CloseFd(out_fd_);
  CloseFd(err_fd_);
}

absl::StatusOr<std::string> ChildProcess::ReadLine(absl::Time deadline) {
  char buf[4096];
  while (true) {
    size_t nl = out_buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = out_buf_.substr(0, nl);
      out_buf_.erase(0, nl + 1);
      return line;
    }
    int left =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no line from child ", pid_, "; stderr: ", DrainStderr()));
    }
    pollfd fd = {out_fd_, POLLIN, 0};
    if (poll(&fd, 1, left) <= 0) continue;
    ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat(
          "child ", pid_, " closed stdout; stderr: ", DrainStderr()));
    }
    out_buf_.append(buf, n);
  }
}

std::string ChildProcess::DrainStderr() {
  char buf[4096];
  ssize_t n;
  while ((n = read(err_fd_, buf, sizeof(buf))) > 0) err_buf_.append(buf, n);
  return err_buf_;
}

absl::StatusOr<int> ChildProcess::Stop(int sig, absl::Time deadline) {
  if (exited_) return absl::FailedPreconditionError("already stopped");
  kill(pid_, sig);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      return status;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("child ", pid_, " did not exit after signal ", sig));
    }
    absl::SleepFor(absl::Milliseconds(5));  // Polling waitpid, not syncing.
  }
}

}  // namespace sockagent::testing
