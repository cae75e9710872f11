#include "service/malloc_tuning.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>  // Defines __GLIBC__ on glibc systems.
#include <mutex>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sockagent {

namespace {
constexpr int kMmapThresholdBytes = 8 << 20;
constexpr int kTrimThresholdBytes = 64 << 20;
}  // namespace

void TuneMallocForStreams() {
#if defined(__GLIBC__)
  // One arena: every thread's buffers share one heap top instead of each
  // gRPC thread's arena keeping (or trimming and refaulting) its own, so
  // what a relay leaves is small and malloc_trim can return it (it only
  // trims the main arena's top). mallopt answers 0 when it refuses a
  // value; the defaults then stay, which is slower for relays but correct,
  // so there is nothing to report.
  (void)mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  (void)mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes);
  (void)mallopt(M_ARENA_MAX, 1);
#endif
}

void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  (void)malloc_trim(0);
#endif
}

namespace {

// The trimmer: a thread that sleeps until NoteReleasedMemory wakes it.
// Never destroyed (a detached thread may wait on it at exit).
struct Trimmer {
  std::atomic<unsigned long long> released{0};
  std::mutex mu;
  std::condition_variable wake;
  bool wanted = false;  // Guarded by mu.

  Trimmer() {
    std::thread([this] {
      std::unique_lock<std::mutex> lock(mu);
      for (;;) {
        wake.wait(lock, [this] { return wanted; });
        wanted = false;
        lock.unlock();
        ReleaseFreedMemory();
        lock.lock();
        // A large release usually comes in many pieces (watchers ending
        // one by one, a bulk close): once they stop, trim once more for
        // the tail that did not reach the threshold again.
        while (!wake.wait_for(lock, std::chrono::milliseconds(250),
                              [this] { return wanted; })) {
          if (released.exchange(0) == 0) break;
          lock.unlock();
          ReleaseFreedMemory();
          lock.lock();
        }
      }
    }).detach();
  }
};

Trimmer& TheTrimmer() {
  static Trimmer* trimmer = new Trimmer();
  return *trimmer;
}

}  // namespace

void NoteReleasedMemory(unsigned long long bytes) {
  Trimmer& t = TheTrimmer();
  const unsigned long long before = t.released.fetch_add(bytes);
  if (before + bytes < kTrimAfterReleasedBytes) return;
  // One caller wins the reset and wakes the trimmer.
  unsigned long long expected = before + bytes;
  while (expected >= kTrimAfterReleasedBytes &&
         !t.released.compare_exchange_weak(expected, 0)) {
  }
  if (expected < kTrimAfterReleasedBytes) return;
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.wanted = true;
  }
  t.wake.notify_one();
}

}  // namespace sockagent
