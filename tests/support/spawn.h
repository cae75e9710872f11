// Starting a child process with the three standard fds chosen by the test:
// what RunCommand and ChildProcess (subprocess.h) are built on, for tests
// that drive a child's stdin/stdout/stderr themselves (cli_listen_test).
//
//   absl::StatusOr<pid_t> pid = Spawn({SOCKCTL_PATH, "listen", "0"},
//                                     in_read, out_write, err_write);
#ifndef SOCKAGENT_TESTS_SUPPORT_SPAWN_H_
#define SOCKAGENT_TESTS_SUPPORT_SPAWN_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sockagent::testing {

// Spawns argv (argv[0] searched in PATH) with stdin, stdout and stderr
// connected to the given fds, default signal dispositions and an empty
// signal mask whatever the test process blocked. The caller reaps it.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int in_fd,
                            int out_fd, int err_fd);

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_SPAWN_H_
