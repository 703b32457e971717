// SPDX-License-Identifier: BSD-2-Clause
// Pieces every monitor shares: the never-changing generation word that
// monitors without per-range generations hand out in their WatchTokens, and
// the null monitor (REGCACHE_MONITOR_NONE), which watches nothing and so
// leaves invalidation to regcache_invalidate(). The main functions exported
// are StaticGeneration() and CreateNullMonitor().
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "monitor.h"
#include "monitor_fds.h"

namespace regcache_internal {

const std::atomic<uint64_t>* StaticGeneration() {
  // Constant-initialised, never written: the hit path's
  // `generation->load() == expected` check always passes for it.
  static constinit const std::atomic<uint64_t> kGeneration{0};
  return &kGeneration;
}

namespace {

// Accepts every range and reports nothing. The cache then relies on the
// application calling regcache_invalidate() before it unmaps memory.
class NullMonitor final : public Monitor {
 public:
  regcache_monitor_kind kind() const override { return REGCACHE_MONITOR_NONE; }
  int Start(InvalidationSink*, std::atomic<uint32_t>*, std::string*) override {
    return 0;
  }
  int Watch(uint64_t, uint64_t, WatchToken* token) override {
    token->generation = StaticGeneration();
    token->expected = token->generation->load(std::memory_order_relaxed);
    token->cookie = 0;
    return 0;
  }
  void Unwatch(uint64_t, uint64_t, const WatchToken&) override {}
  void WaitForPending() override {}
  int RestartInChild(std::string*) override { return 0; }
  void Stop() override {}
};

}  // namespace

std::unique_ptr<Monitor> CreateNullMonitor() {
  return std::make_unique<NullMonitor>();
}

}  // namespace regcache_internal

// ---------------------------------------------------------------------------
// Fds closed in fork children (monitor_fds.h).

namespace regcache_internal {
namespace {

struct ForkClosedSlot {
  std::atomic<bool> in_use{false};
  MonitorFds fds;
};
constexpr int kForkClosedSlots = 32;
ForkClosedSlot g_fork_closed[kForkClosedSlots];  // constant-initialised

void CloseFdsInForkChild() {
  for (ForkClosedSlot& slot : g_fork_closed) {
    if (!slot.in_use.load(std::memory_order_relaxed)) continue;
    CloseExchanged(&slot.fds.primary);
    CloseExchanged(&slot.fds.wake);
  }
}

}  // namespace

void CloseExchanged(std::atomic<int>* fd) {
  const int old = fd->exchange(-1);
  if (old >= 0) close(old);
}

MonitorFds* AcquireForkClosedFds() {
  // glibc unregisters the handler if this library is dlclose()d.
  static const int installed =
      pthread_atfork(nullptr, nullptr, &CloseFdsInForkChild);
  (void)installed;
  for (ForkClosedSlot& slot : g_fork_closed) {
    bool expected = false;
    if (slot.in_use.compare_exchange_strong(expected, true)) return &slot.fds;
  }
  return nullptr;
}

void ReleaseForkClosedFds(MonitorFds* fds) {
  for (ForkClosedSlot& slot : g_fork_closed) {
    if (&slot.fds == fds) slot.in_use.store(false);
  }
}

}  // namespace regcache_internal
