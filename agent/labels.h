// Bounds on labels (the string maps servers and connections carry) and on
// label selectors. Kubernetes' limits are the model: a caller could
// otherwise attach megabytes to every object, and every listing, event and
// history record would copy them.
//
//   if (absl::Status s = CheckLabels(spec.labels, "labels"); !s.ok()) ...
//
// A selector matches only objects whose labels hold every pair of it, so a
// selector beyond these bounds could never match anything: it is refused
// the same way (InvalidArgument naming the limit).
#ifndef SOCKAGENT_AGENT_LABELS_H_
#define SOCKAGENT_AGENT_LABELS_H_

#include <cstddef>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sockagent {

// Ordered so listings and messages are stable.
using Labels = std::map<std::string, std::string>;

// Labels per object.
inline constexpr size_t kMaxLabels = 64;
// A key's name (after the last '/', or the whole key without one).
inline constexpr size_t kMaxLabelNameBytes = 63;
// A whole key with a "prefix/" (Kubernetes: a DNS-subdomain prefix).
inline constexpr size_t kMaxPrefixedLabelKeyBytes = 253;
inline constexpr size_t kMaxLabelValueBytes = 256;
// Every key and value of one object together.
inline constexpr size_t kMaxLabelsTotalBytes = 16 * 1024;

// OK, or InvalidArgument "FIELD: ..." naming the first limit exceeded (and
// the key, shortened). Keys must not be empty; values may be.
absl::Status CheckLabels(const Labels& labels, absl::string_view field);

// The bytes of every key and value of `labels`.
size_t LabelsBytes(const Labels& labels);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_LABELS_H_
