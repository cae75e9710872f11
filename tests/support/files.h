// Small file helpers for tests that check what the agent leaves on disk
// (UNIX socket paths, token and config files).
//
//   WriteFile(path, "not a socket");
//   EXPECT_FALSE(IsSocket(path));
//   EXPECT_EQ(ReadFile(path), "not a socket");
#ifndef SOCKAGENT_TESTS_SUPPORT_FILES_H_
#define SOCKAGENT_TESTS_SUPPORT_FILES_H_

#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <string>

namespace sockagent::testing {

// Whether anything (a dangling link too) is at `path`.
inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Whether `path` itself (not where a link points) is a socket.
inline bool IsSocket(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path) << content;
}

// The whole file; "" when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_FILES_H_
