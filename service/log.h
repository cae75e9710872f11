// The daemon's structured log: one line per event that matters, on stderr,
// in logfmt (key=value pairs separated by spaces; a value with spaces,
// quotes or '=' is quoted with Go-style escapes):
//
//   ts=2026-11-25T12:00:00.000Z level=info event=start listen=unix:/run/...
//   ts=... level=warn event=auth_failure method=/sockagent.v1.SocketAgent/Send
//       peer=ipv4:127.0.0.1:40312 code=UNAUTHENTICATED msg="wrong bearer token"
//
// logfmt by default: it reads well in a terminal and `grep
// event=auth_failure` works, and every value is still machine-parseable.
// --log-format=json writes the same line as one JSON object instead
// (log shippers that want JSON): {"ts":"...","level":"info","event":"start",
// "listen":"..."} — keys in the same order, every value a string, control
// characters escaped, bytes that are not UTF-8 replaced by U+FFFD.
// Lines below the level set by SetLogLevel (--log-level) are dropped. Each
// line is written with one write(2), so lines from different threads never
// interleave. Any thread. No gRPC here (the engine may use it too).
//
//   LogEvent(LogLevel::kWarn, "insecure", {{"listen", "0.0.0.0:7878"}});
#ifndef SOCKAGENT_SERVICE_LOG_H_
#define SOCKAGENT_SERVICE_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockagent {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kLogfmt = 0, kJson = 1 };

// "debug", "info", "warn" (or "warning"), "error"; INVALID_ARGUMENT naming
// the choices otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
absl::string_view LogLevelName(LogLevel level);

// "logfmt" or "json"; INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text);

// Process-wide; default kInfo.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
// Process-wide; default kLogfmt. Set it before other threads log.
void SetLogFormat(LogFormat format);

using LogField = std::pair<absl::string_view, std::string>;

// One line: ts, level, event, then `fields` in order.
void LogEvent(LogLevel level, absl::string_view event,
              std::initializer_list<LogField> fields = {});

// The line LogEvent would write (without the trailing newline), for tests:
// logfmt, or `format`.
std::string FormatLogLine(absl::string_view timestamp, LogLevel level,
                          absl::string_view event,
                          std::initializer_list<LogField> fields);
std::string FormatLogLine(LogFormat format, absl::string_view timestamp,
                          LogLevel level, absl::string_view event,
                          std::initializer_list<LogField> fields);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_LOG_H_
