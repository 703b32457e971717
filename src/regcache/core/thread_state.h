// SPDX-License-Identifier: BSD-2-Clause
// Per-thread state of a cache: hold slots (the handles regcache_get returns),
// the table hazard, the churn lanes; per-slot hit counts.
//
// A hold is a slot whose `held` word is 1 and whose `entry` names the entry
// held. Only the owning thread takes a free slot (held 0 -> 1), so taking a
// hold is two plain stores on a cache line no other thread writes, which is
// what lets two threads hit the same entry without sharing a written line.
// Any thread may release (1 -> 0): the owner with a plain store, others with
// a compare-exchange. A released slot keeps its `entry` pointer until
// reused; scanners only trust `entry` when `held` is 1.
//
// A ThreadState is exactly kThreadStateBytes (a power of two) so that
// regcache_put() can check "is this a slot?" with masks, not division.
#ifndef REGCACHE_SRC_REGCACHE_CORE_THREAD_STATE_H_
#define REGCACHE_SRC_REGCACHE_CORE_THREAD_STATE_H_

#include <stddef.h>

#include <atomic>
#include <cstdint>

#include "core/entry.h"
#include "core/hash_index.h"

namespace regcache_internal {

struct ThreadState;

struct alignas(32) HoldSlot {
  std::atomic<Entry*> entry{nullptr};
  // 1 while the handle is held; see the protocol in cache_hit.h.
  std::atomic<uint32_t> held{0};
  // kSlotPrivate when the handle is an uncached get's (its entry is
  // kPrivate, and the put deregisters it). Written by the owner when it
  // takes the slot (R3 writes 0), read by whoever puts the handle.
  std::atomic<uint32_t> flags{0};
  // Gets this slot served from the cache. Written only by the owning thread
  // (load + store, no read-modify-write) on the line a hit writes anyway;
  // summed by regcache_stats().
  std::atomic<uint64_t> hits{0};
  // ThisThreadKey() of the owning thread (copied into every slot so that
  // Put() reads only the slot's line): the owner releases with a plain
  // store, anyone else with a compare-exchange.
  std::atomic<const void*> owner_key{nullptr};

  void AddHit() {
    hits.store(hits.load(std::memory_order_relaxed) + 1,
               std::memory_order_relaxed);
  }
};
static_assert(sizeof(HoldSlot) == 32);

inline constexpr uint32_t kSlotPrivate = 1;
inline constexpr int kSlotsPerThread = 28;
inline constexpr size_t kThreadStateBytes = 1024;
inline constexpr size_t kSlotsOffset = 128;

// One churning range whose next `left` gets this thread may serve
// uncached without asking the churn table (ChurnTable::TakeSkip() granted
// them under mu_; GetSlow() gives back what is left when another range
// takes the way over or a get of the range comes its way). `entry` is the
// lane's own entry (Entry::lane): kFree while no handle holds it, kPrivate
// while one does. Only the owning thread writes `first`, `left` and `entry`,
// and takes the entry (kFree -> kPrivate); whoever puts the handle gives it
// back (kPrivate -> kFree, release).
struct ChurnLane {
  uint64_t first = 0;  // the range's first page
  uint32_t left = 0;   // 0: the lane is empty
  Entry* entry = nullptr;
};
inline constexpr int kChurnLanes = 2;

struct alignas(kThreadStateBytes) ThreadState {
  // ---- Header line: written by the owner, read by scanners ----
  // Announces the hash table this thread may be reading (see hash_index.h).
  std::atomic<HashTable*> table_hazard{nullptr};
  // Another ThreadState of the same thread, used when all slots are held.
  std::atomic<ThreadState*> overflow{nullptr};
  // 1 while a live thread owns this state as its primary one, 2 for an
  // overflow state, 0 when orphaned (thread exit or fork) and adoptable.
  std::atomic<uint32_t> live{0};
  ThreadState* arena_next = nullptr;  // Arena free list (unused: states are
                                      // recycled through `live`)
  // ---- The churn lanes (second line), written by the owner ----
  // Uncached gets of churning ranges that this state's thread serves
  // without the cache mutex (Cache::GetChurnLane()); see ChurnLane.
  alignas(64) ChurnLane lanes[kChurnLanes];
  // The way the next grant replaces when no lane has its range.
  uint32_t lane_next = 0;
  // Gets the lanes served (load + store; summed for tests).
  std::atomic<uint64_t> lane_gets{0};
  // ---- Slots, from kSlotsOffset ----
  alignas(64) HoldSlot slots[kSlotsPerThread];

  void SetOwner(const void* key) {
    for (auto& s : slots) s.owner_key.store(key, std::memory_order_relaxed);
  }
};
static_assert(sizeof(ThreadState) == kThreadStateBytes);
static_assert(offsetof(ThreadState, slots) == kSlotsOffset);

// The state a slot belongs to: ThreadStates are kThreadStateBytes-aligned.
inline ThreadState* OwnerOf(const HoldSlot* slot) {
  return reinterpret_cast<ThreadState*>(reinterpret_cast<uintptr_t>(slot) &
                                        ~uintptr_t{kThreadStateBytes - 1});
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_THREAD_STATE_H_
