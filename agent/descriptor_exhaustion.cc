#include "agent/descriptor_exhaustion.h"

#include <atomic>
#include <cerrno>

namespace sockagent {
namespace {
std::atomic<DescriptorExhaustionHook> g_hook{nullptr};
}  // namespace

void SetDescriptorExhaustionHook(DescriptorExhaustionHook hook) {
  g_hook.store(hook, std::memory_order_release);
}

void ReportDescriptorExhaustion(const char* where, int err) {
  if (err != EMFILE && err != ENFILE) return;
  DescriptorExhaustionHook hook = g_hook.load(std::memory_order_acquire);
  if (hook != nullptr) hook(where, err);
}

}  // namespace sockagent
