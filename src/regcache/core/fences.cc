// SPDX-License-Identifier: BSD-2-Clause
// membarrier()-based heavy fence; see fences.h for the protocol.
#include "core/fences.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace regcache_internal {

bool g_asymmetric_fences = false;

namespace {
long Membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }
std::atomic<uint64_t> g_heavy_fences{0};
}  // namespace

uint64_t HeavyFenceCount() {
  return g_heavy_fences.load(std::memory_order_relaxed);
}

void InitFences() {
#if !defined(REGCACHE_SYMMETRIC_FENCES)
  static std::once_flag once;
  std::call_once(once, [] {
    long cmds = Membarrier(MEMBARRIER_CMD_QUERY);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return;
    if (Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return;
    __atomic_store_n(&g_asymmetric_fences, true, __ATOMIC_SEQ_CST);
  });
#endif
}

// Decide before main() (and so before any cache exists) so that a reader
// and a reclaimer never disagree about which fence pairing is in force.
__attribute__((constructor)) static void InitFencesAtLoad() { InitFences(); }

void HeavyFence() {
  g_heavy_fences.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (__atomic_load_n(&g_asymmetric_fences, __ATOMIC_ACQUIRE)) {
    // Cannot fail once registered (EINTR is not possible for this command).
    Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace regcache_internal
