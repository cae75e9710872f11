#include "service/malloc_tuning.h"

#include <cstdlib>  // Defines __GLIBC__ on glibc systems.

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

}  // namespace sockagent
