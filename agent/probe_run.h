// One probe of a Probe call (agent/prober.h), on the loop thread: resolve
// the target (numeric without a lookup, names on the ResolverPool), check
// the policy, connect, run the TLS handshake when asked, send the payload,
// read the echo, and end with one ProbeOutcome whose class comes from the
// errno or the resolver's code. Internal to the prober: Prober starts runs
// and holds them while they live.
#ifndef SOCKAGENT_AGENT_PROBE_RUN_H_
#define SOCKAGENT_AGENT_PROBE_RUN_H_

#include <asio.hpp>
#include <cstddef>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/prober.h"
#include "agent/tls.h"

namespace sockagent {

// Lets resolver callbacks (pool threads) find out whether the prober, and
// with it its io_context, is still there before posting to it.
struct Prober::Alive {
  absl::Mutex mu;
  asio::io_context* io ABSL_GUARDED_BY(mu) = nullptr;
};

class ProbeRun {
 public:
  // Called once, on the loop thread, with the target's index and outcome
  // (not after Abandon).
  using EndFn = absl::AnyInvocable<void(size_t, ProbeOutcome)>;

  // `target` lives in the call's spec, which outlives the run; `tls` is
  // null without TLS.
  static std::shared_ptr<ProbeRun> Make(
      asio::io_context& io, const ProberOptions& options,
      std::shared_ptr<Prober::Alive> alive, const ProbeTarget& target,
      size_t index, absl::Duration timeout,
      std::shared_ptr<const TlsClientContext> tls, EndFn on_end);
  virtual ~ProbeRun() = default;

  // Starts the probe; it ends by `deadline` at the latest (or its timeout).
  virtual void Begin(absl::Time deadline) = 0;
  // Ends without reporting (the call was cancelled or is shutting down).
  virtual void Abandon() = 0;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_PROBE_RUN_H_
