// SPDX-License-Identifier: BSD-2-Clause
// Asymmetric memory fences for the hit path.
//
// The hit path publishes a hold (a store) and then re-reads the entry's
// sequence word (a load). The reclaimer marks an entry invalid (a store) and
// then scans every hold (loads). Each side needs a store->load fence, but the
// hit path runs millions of times a second and the reclaimer rarely, so the
// cost is moved to the reclaimer: LightFence() is only a compiler barrier and
// HeavyFence() is membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which runs a
// full barrier on every CPU currently running a thread of this process. Any
// hit-path store/load pair is then either entirely before that barrier (the
// store is visible to the scan) or its load is after it (the load sees the
// invalid mark). Where membarrier is unavailable, or under ThreadSanitizer
// (which does not model it), both sides use seq_cst fences instead.
#ifndef REGCACHE_SRC_REGCACHE_CORE_FENCES_H_
#define REGCACHE_SRC_REGCACHE_CORE_FENCES_H_

#include <atomic>

namespace regcache_internal {

// True once membarrier private-expedited is registered for this process.
extern bool g_asymmetric_fences __attribute__((visibility("hidden")));

// Register membarrier if possible. Idempotent, thread-safe.
void InitFences();

inline void LightFence() {
#if defined(REGCACHE_SYMMETRIC_FENCES)
  std::atomic_thread_fence(std::memory_order_seq_cst);
#else
  if (__builtin_expect(g_asymmetric_fences, 1)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
#endif
}

// Pairs with LightFence(). A system call when membarrier is in use.
void HeavyFence();
// HeavyFence() calls so far in this process (tests check when it is skipped).
uint64_t HeavyFenceCount();

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_FENCES_H_
