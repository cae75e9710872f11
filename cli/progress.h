// A one-line progress bar with rate for long transfers, redrawn in place on
// stderr (carriage return), at most every 100 ms, and ended with a newline.
//
//   ProgressBar bar(total_bytes, /*enabled=*/isatty(STDERR_FILENO));
//   for (...) { Send(chunk); bar.Update(sent); }
//   bar.Finish(sent);
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sockctl {

// "[#########...........]  45%  12.0 MiB / 27.0 MiB  8.1 MiB/s" when
// `total` is known (non-zero), else "12.0 MiB  8.1 MiB/s". `width` is the
// bar's inner width in characters.
std::string ProgressLine(uint64_t done, uint64_t total, absl::Duration elapsed,
                         int width = 30);

// 1536 -> "1.5 KiB", 3 -> "3 B".
std::string HumanBytes(double bytes);

class ProgressBar final {
 public:
  ProgressBar(uint64_t total, bool enabled, std::FILE* out = stderr)
      : total_(total), enabled_(enabled), out_(out), start_(absl::Now()) {}

  void Update(uint64_t done);
  // Draws the final state and ends the line (if anything was drawn).
  void Finish(uint64_t done);

 private:
  void Draw(uint64_t done);

  const uint64_t total_;
  const bool enabled_;
  std::FILE* const out_;
  const absl::Time start_;
  absl::Time last_draw_ = absl::InfinitePast();
  size_t last_length_ = 0;
};

}  // namespace sockctl
