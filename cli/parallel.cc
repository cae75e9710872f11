#include "cli/parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace sockctl {

void ForEachBounded(size_t n, size_t limit,
                    const std::function<void(size_t)>& fn) {
  const size_t threads = std::min(n, std::max<size_t>(limit, 1));
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // A shared cursor rather than a queue: each worker takes the next index
  // until none is left, so no more than `threads` calls ever overlap.
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
    });
  }
  for (std::thread& worker : workers) worker.join();
}

}  // namespace sockctl
