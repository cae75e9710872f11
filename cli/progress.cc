#include "cli/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sockctl {

std::string HumanBytes(double bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrFormat("%.0f B", bytes);
  return absl::StrFormat("%.1f %s", bytes, kUnits[unit]);
}

std::string ProgressLine(uint64_t done, uint64_t total, absl::Duration elapsed,
                         int width) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const std::string rate =
      seconds > 0 ? absl::StrCat(HumanBytes(done / seconds), "/s") : "-";
  if (total == 0) return absl::StrCat(HumanBytes(done), "  ", rate);
  const double fraction =
      std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int filled = static_cast<int>(fraction * width);
  return absl::StrFormat("[%s%s] %3d%%  %s / %s  %s", std::string(filled, '#'),
                         std::string(width - filled, '.'),
                         static_cast<int>(fraction * 100), HumanBytes(done),
                         HumanBytes(total), rate);
}

void ProgressBar::Update(uint64_t done) {
  if (!enabled_) return;
  const absl::Time now = absl::Now();
  if (now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  Draw(done);
}

void ProgressBar::Finish(uint64_t done) {
  if (!enabled_) return;
  Draw(done);
  std::fputc('\n', out_);
  std::fflush(out_);
}

void ProgressBar::Draw(uint64_t done) {
  std::string line = ProgressLine(done, total_, absl::Now() - start_);
  // Blank out what a longer previous line left behind.
  const size_t length = line.size();
  if (length < last_length_) line.append(last_length_ - length, ' ');
  last_length_ = length;
  std::fprintf(out_, "\r%s", line.c_str());
  std::fflush(out_);
}

}  // namespace sockctl
