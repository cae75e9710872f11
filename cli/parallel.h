// Runs the same job for many items at once with a bound on how many run
// together: one call per agent of a fleet, one probe per cell of the
// connectivity matrix. No gRPC here.
//
//   ForEachBounded(agents.size(), kMaxAgentsInFlight,
//                  [&](size_t i) { results[i] = Ask(agents[i]); });
#pragma once

#include <cstddef>
#include <functional>

namespace sockctl {

// Calls fn(0) .. fn(n - 1), each exactly once, on at most `limit` threads at
// a time (limit 0 counts as 1), and returns when every call has returned.
// Items start in index order; they finish in any order. `fn` must be safe to
// call from several threads at once: give each item its own output slot.
void ForEachBounded(size_t n, size_t limit,
                    const std::function<void(size_t)>& fn);

}  // namespace sockctl
