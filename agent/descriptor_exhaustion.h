// How the engine reports running out of file descriptors (EMFILE, ENFILE)
// without depending on the daemon's log: the daemon installs a hook (it
// writes a rate-limited log line, service/fd_budget.h); without one nothing
// is reported beyond the engine's own error event.
//
//   SetDescriptorExhaustionHook(&LogDescriptorExhaustion);  // in main
//   ReportDescriptorExhaustion("engine_accept", errno);     // in the engine
#ifndef SOCKAGENT_AGENT_DESCRIPTOR_EXHAUSTION_H_
#define SOCKAGENT_AGENT_DESCRIPTOR_EXHAUSTION_H_

namespace sockagent {

// `where` is a static string naming the call site; `err` is the errno.
using DescriptorExhaustionHook = void (*)(const char* where, int err);

// Set once, before the engine starts. Any thread may report afterwards.
void SetDescriptorExhaustionHook(DescriptorExhaustionHook hook);

// Calls the hook when `err` is EMFILE or ENFILE; otherwise does nothing.
void ReportDescriptorExhaustion(const char* where, int err);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_DESCRIPTOR_EXHAUSTION_H_
