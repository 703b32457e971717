// SPDX-License-Identifier: BSD-2-Clause
// Pieces every monitor shares: the never-changing generation word that
// monitors without per-range generations hand out in their WatchTokens, and
// the null monitor (REGCACHE_MONITOR_NONE), which watches nothing and so
// leaves invalidation to regcache_invalidate(). The main functions exported
// are StaticGeneration() and CreateNullMonitor().
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "monitor.h"

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
