// A sockctl run that starts servers on several agents (matrix, perf) labels
// them LABEL=RUN, so that they are found and stopped together on every way
// out, and stop by themselves at their TTL if sockctl dies first.
#ifndef SOCKAGENT_CLI_LABELLED_RUN_H_
#define SOCKAGENT_CLI_LABELLED_RUN_H_

#include <atomic>
#include <string>
#include <vector>

#include "cli/fleet.h"

namespace sockctl {

// A new run id: 8 random hex digits.
std::string NewRunId();

// Stops every server labelled label=run (closing its connections) on each
// agent i with reached[i], kMaxAgentsInFlight agents at a time. A failure is
// reported per agent, then one line says how to stop what is left. Never
// fatal: returns whether every agent answered.
bool StopLabelledServers(const Fleet& fleet, const std::string& label,
                         const std::string& run,
                         const std::vector<std::atomic<bool>>& reached);

}  // namespace sockctl

#endif  // SOCKAGENT_CLI_LABELLED_RUN_H_
