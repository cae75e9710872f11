#include "service/log.h"

#include <errno.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sockagent {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kLogfmt)};

// Length of the well-formed UTF-8 sequence (2 to 4 bytes) starting at
// s[i], or 0 when s[i] does not start one (stray continuation byte,
// overlong form, surrogate, beyond U+10FFFF, truncated).
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) -> unsigned {
    return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u;
  };
  const auto cont = [&](size_t k) { return (byte(k) & 0xC0u) == 0x80u; };
  const unsigned b0 = byte(i);
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const unsigned b1 = byte(i + 1);
    if ((b0 == 0xE0 && b1 < 0xA0) || (b0 == 0xED && b1 >= 0xA0)) return 0;
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const unsigned b1 = byte(i + 1);
    if ((b0 == 0xF0 && b1 < 0x90) || (b0 == 0xF4 && b1 >= 0x90)) return 0;
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// `value` in double quotes with '"', '\\' and control characters escaped,
// as a JSON string (control characters as \u00XX, bytes that are not
// UTF-8 replaced by U+FFFD) or as a logfmt value (control characters as
// \xXX, other bytes kept).
void AppendQuoted(std::string* out, absl::string_view value, LogFormat format) {
  const bool json = format == LogFormat::kJson;
  out->push_back('"');
  for (size_t i = 0; i < value.size();) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (json && c >= 0x80) {
      const size_t n = Utf8SequenceLength(value, i);
      if (n == 0) {
        out->append("\\ufffd");
        ++i;
      } else {
        out->append(value.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c >= ' ' && c != 0x7f) {
          out->push_back(static_cast<char>(c));
        } else if (json) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          absl::StrAppendFormat(out, "\\x%02x", c);
        }
    }
    ++i;
  }
  out->push_back('"');
}

void AppendJsonString(std::string* out, absl::string_view value) {
  AppendQuoted(out, value, LogFormat::kJson);
}

bool NeedsQuotes(absl::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
      return true;
    }
  }
  return false;
}

// A logfmt value: bare when it can be, quoted otherwise.
void AppendValue(std::string* out, absl::string_view value) {
  if (NeedsQuotes(value)) {
    AppendQuoted(out, value, LogFormat::kLogfmt);
  } else {
    out->append(value.data(), value.size());
  }
}

// Lines go to stderr from one writer thread, so that a reader of stderr
// that stalls (a paused pager, a full pipe nobody drains) never blocks the
// threads that log — the engine's and gRPC's. The queue is bounded: past
// kMaxQueuedBytes a line is dropped and counted, and the next line written
// is preceded by `event=log_dropped count=N`.
class LogWriter {
 public:
  static constexpr size_t kMaxQueuedBytes = 4 << 20;

  static LogWriter& Get() {
    // Never destroyed: threads may log while the process exits.
    static LogWriter* writer = [] {
      auto* w = new LogWriter();
      std::thread([w] { w->Run(); }).detach();
      std::atexit([] { LogWriter::Get().Flush(absl::Seconds(2)); });
      return w;
    }();
    return *writer;
  }

  void Push(std::string line) {
    absl::MutexLock lock(&mu_);
    if (queued_bytes_ + line.size() > kMaxQueuedBytes) {
      ++dropped_;
      return;
    }
    queued_bytes_ += line.size();
    queue_.push_back(std::move(line));
  }

  // Waits until every line queued so far was written, at most `timeout`.
  void Flush(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return queue_.empty() && !writing_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  }

 private:
  void Run() {
    for (;;) {
      std::deque<std::string> batch;
      uint64_t dropped = 0;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || dropped_ > 0;
        };
        mu_.Await(absl::Condition(&ready));
        batch.swap(queue_);
        queued_bytes_ = 0;
        dropped = dropped_;
        dropped_ = 0;
        writing_ = true;
      }
      std::string out;
      if (dropped > 0) {
        out = FormatLogLine(
            static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)),
            absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                             absl::UTCTimeZone()),
            LogLevel::kWarn, "log_dropped",
            {{"count", absl::StrCat(dropped)},
             {"msg", "stderr was not read fast enough"}});
        out.push_back('\n');
      }
      for (const std::string& line : batch) out += line;
      WriteAll(out);
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
  }

  static void WriteAll(absl::string_view out) {
    while (!out.empty()) {
      const ssize_t n = write(STDERR_FILENO, out.data(), out.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // stderr closed or broken: nothing to do.
      out.remove_prefix(static_cast<size_t>(n));
    }
  }

  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void FlushLog() { LogWriter::Get().Flush(absl::Seconds(2)); }

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(absl::StrCat(
      "--log-level \"", text, "\": expected debug, info, warn or error"));
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "logfmt") return LogFormat::kLogfmt;
  if (lower == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--log-format \"", text, "\": expected logfmt or json"));
}

void SetLogFormat(LogFormat format) {
  g_format.store(static_cast<int>(format), std::memory_order_relaxed);
}

void SetLogLevel(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string FormatLogLine(LogFormat format, absl::string_view timestamp,
                          LogLevel level, absl::string_view event,
                          std::initializer_list<LogField> fields) {
  if (format == LogFormat::kLogfmt) {
    return FormatLogLine(timestamp, level, event, fields);
  }
  std::string line = "{\"ts\":";
  AppendJsonString(&line, timestamp);
  absl::StrAppend(&line, ",\"level\":\"", LogLevelName(level), "\",\"event\":");
  AppendJsonString(&line, event);
  for (const LogField& field : fields) {
    line.push_back(',');
    AppendJsonString(&line, field.first);
    line.push_back(':');
    AppendJsonString(&line, field.second);
  }
  line.push_back('}');
  return line;
}

std::string FormatLogLine(absl::string_view timestamp, LogLevel level,
                          absl::string_view event,
                          std::initializer_list<LogField> fields) {
  std::string line =
      absl::StrCat("ts=", timestamp, " level=", LogLevelName(level), " event=");
  AppendValue(&line, event);
  for (const LogField& field : fields) {
    absl::StrAppend(&line, " ", field.first, "=");
    AppendValue(&line, field.second);
  }
  return line;
}

void LogEvent(LogLevel level, absl::string_view event,
              std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  std::string line = FormatLogLine(
      static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)),
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                       absl::UTCTimeZone()),
      level, event, fields);
  line.push_back('\n');
  LogWriter::Get().Push(std::move(line));
}

}  // namespace sockagent
