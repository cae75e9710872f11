// How sockagentd's heap treats the ~1 MiB buffers a Stream relay allocates
// and frees per message (the gRPC read slices, the parsed `data` string).
// With glibc's defaults each freed buffer at the top of a malloc arena is
// given back to the kernel (trim threshold: twice the largest buffer seen)
// and the next one faults its pages in again: relaying 2 GiB cost the agent
// ~400k minor faults and half of its CPU time (BENCHMARKS.md, Profiles,
// Relay). Keeping freed memory up to a bound while streams run, and giving
// it back when the last one ends, keeps idle memory where it was.
//
//   TuneMallocForStreams();         // once, in main, before threads start
//   ...
//   ReleaseFreedMemory();           // when the last Stream call ended
#ifndef SOCKAGENT_SERVICE_MALLOC_TUNING_H_
#define SOCKAGENT_SERVICE_MALLOC_TUNING_H_

namespace sockagent {

// Buffers up to 8 MiB (above the default 4 MiB message limit) come from the
// heap instead of mmap, all threads share one arena, and its top keeps up
// to 64 MiB of freed memory before trimming. Measured on a 2 GiB relay:
// the agent's minor faults 350k -> 6-13k, its CPU -44 %, RSS after the
// stream as before (19-23 MiB). Best effort: without glibc (or under a
// sanitizer's allocator) nothing changes.
void TuneMallocForStreams();

// Returns freed heap memory to the kernel (malloc_trim). Takes a few
// milliseconds at most; call it off the hot path. Any thread.
void ReleaseFreedMemory();

// Counts `bytes` just freed; once the count since the last trim passes
// kTrimAfterReleasedBytes, a background thread runs ReleaseFreedMemory (one
// trim at a time; the caller never waits). Costs an atomic add: callable
// with locks held, from the engine's memory-released hook
// (EngineOptions::on_memory_released), watchers ending, large answers.
inline constexpr unsigned long long kTrimAfterReleasedBytes = 16ull << 20;
void NoteReleasedMemory(unsigned long long bytes);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_MALLOC_TUNING_H_
