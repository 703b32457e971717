// SPDX-License-Identifier: BSD-2-Clause
// Per-thread state of a cache: hold slots (the handles regcache_get returns),
// the table hazard and per-thread statistics.
//
// A hold is a slot whose `held` word is 1 and whose `entry` names the entry
// held. Only the owning thread takes a free slot (held 0 -> 1), so taking a
// hold is two plain stores on a cache line no other thread writes, which is
// what lets two threads hit the same entry without sharing a written line.
// Any thread may release (1 -> 0): the owner with a plain store, others with
// a compare-exchange. A released slot keeps its `entry` pointer until
// reused; scanners only trust `entry` when `held` is 1.
#ifndef REGCACHE_SRC_REGCACHE_THREAD_STATE_H_
#define REGCACHE_SRC_REGCACHE_THREAD_STATE_H_

#include <atomic>
#include <cstdint>

#include "entry.h"
#include "hash_index.h"

namespace regcache_internal {

struct ThreadState;

struct alignas(32) HoldSlot {
  std::atomic<Entry*> entry{nullptr};
  // 1 while the handle is held; see the protocol in cache_hit.h.
  std::atomic<uint32_t> held{0};
  uint32_t index = 0;           // position in owner->slots; set once
  ThreadState* owner = nullptr; // set once
};

inline constexpr int kSlotsPerThread = 32;

// Statistic counters written only by the owning thread (relaxed load+store,
// no read-modify-write), summed by regcache_stats().
struct ThreadCounters {
  std::atomic<uint64_t> hits{0};
  void AddHit() {
    hits.store(hits.load(std::memory_order_relaxed) + 1,
               std::memory_order_relaxed);
  }
};

struct alignas(64) ThreadState {
  HoldSlot slots[kSlotsPerThread];
  // Announces the hash table this thread may be reading (see hash_index.h).
  std::atomic<HashTable*> table_hazard{nullptr};
  ThreadCounters counters;
  // Owner-only: where to look for a free slot first.
  uint32_t hint = 0;
  // Another ThreadState of the same thread, used when all slots are held.
  std::atomic<ThreadState*> overflow{nullptr};
  // 1 while a live thread owns this state; 0 when orphaned (thread exit or
  // fork) and reusable. Guarded by the cache mutex for transitions.
  std::atomic<uint32_t> live{0};
  // ThisThreadKey() of the owning thread: Put() by the owner releases with
  // a plain store, by anyone else with a compare-exchange.
  std::atomic<const void*> owner_key{nullptr};
  ThreadState* arena_next = nullptr;  // Arena free list (never used: states
                                      // are recycled through `live`)
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_THREAD_STATE_H_
