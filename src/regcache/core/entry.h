// SPDX-License-Identifier: BSD-2-Clause
// A cache entry: one registration and everything the cache keeps about it.
//
// Entries live in an Arena (type-stable memory): the lock-free hit path may
// read an entry that is being invalidated, freed or reused, and relies on
// `seq` to tell. Fields the hit path reads are atomics; the rest are guarded
// by the cache mutex. Layout: the first cache line is what a hit reads.
#ifndef REGCACHE_SRC_REGCACHE_CORE_ENTRY_H_
#define REGCACHE_SRC_REGCACHE_CORE_ENTRY_H_

#include <atomic>
#include <cstdint>

#include "core/interval_tree.h"
#include "monitor/monitor.h"
#include "regcache/regcache.h"

namespace regcache_internal {

// Entry lifecycle (state bits of Entry::seq):
//
//   kFree --(miss path registers, under mu_)--> kValid
//   kValid --(invalidate / evict / flush, under mu_)--> kZombie
//   kZombie --(reclaim: no hold seen after HeavyFence)--> dereg --> kFree
//   kFree --(uncached get, under mu_)--> kPrivate --(its put)--> dereg -->
//   kFree
//   A lane entry (Entry::lane) makes the last two moves without mu_: only
//   its thread takes it (kFree -> kPrivate), only its handle's put gives
//   it back.
//
// Every transition out of kFree increments the generation, so a reader
// holding a sequence snapshot of an earlier life of the same memory never
// mistakes a reused entry for the one it looked up (no ABA).
enum EntryState : uint64_t {
  kFree = 0,
  kValid = 1,
  kZombie = 2,  // out of every lookup structure, waiting for holds to drain
  // An uncached get's registration: never in any lookup structure or list,
  // held by exactly the one handle that made it, deregistered by its put.
  kPrivate = 3,
};
inline constexpr uint64_t kStateMask = 3;
inline uint64_t SeqState(uint64_t seq) { return seq & kStateMask; }
inline uint64_t SeqMake(uint64_t generation, EntryState s) {
  return (generation << 2) | s;
}
inline uint64_t SeqGeneration(uint64_t seq) { return seq >> 2; }

inline constexpr int kMaxAliases = 3;

// How many newcomers an entry that is not hit may keep out of a full cache
// (Cache::AdmitLocked). A count-min sketch over-counts a range whose
// counters all collide with busier ranges; without this bound such an
// entry would win every duel, a tie included, and keep a new working set
// out for good. An entry hit between two passes of the CLOCK hand starts
// again from 0, so a cyclic scan's incumbents keep their places.
inline constexpr uint8_t kMaxDuelsWithoutHit = 8;

struct alignas(64) Entry {
  // ---- Read by the lock-free hit path (first cache line) ----
  // Generation and state (see EntryState). Written under mu_ with release
  // order after every other field of the new life is written.
  std::atomic<uint64_t> seq{0};
  // INVARIANT (while kValid): first/last are page aligned, first <= last,
  // and [first, last] is exactly what mr describes.
  std::atomic<uint64_t> first{0};
  std::atomic<uint64_t> last{0};
  std::atomic<uint32_t> access{0};  // regcache_access bits registered
  // Approximate recency for CLOCK eviction: the hit path stores the cache's
  // current epoch here when it differs (so a hot entry is written once per
  // eviction pass, not once per hit).
  std::atomic<uint32_t> lru_epoch{0};
  // The monitor's per-range generation word and its value at Watch() time;
  // a hit requires *watch_generation == watch_expected (one load: this is
  // how the kernel module invalidates synchronously).
  std::atomic<const std::atomic<uint64_t>*> watch_generation{nullptr};
  std::atomic<uint64_t> watch_expected{0};

  // ---- Read by holders of the entry ----
  // Written under mu_ before seq becomes kValid (release); read by whoever
  // holds a handle (acquire on seq orders it).
  regcache_mr mr{};

  // ---- Guarded by the cache mutex ----
  IntervalNode node;          // in Cache::tree_ while kValid
  Entry* lru_prev = nullptr;  // Cache::lru_ list while kValid
  Entry* lru_next = nullptr;
  Entry* zombie_next = nullptr;             // Cache::zombies_ / scratch lists
  WatchToken token;                         // from Monitor::Watch()
  uint64_t alias_firsts[kMaxAliases] = {};  // extra index keys (page starts)
  uint8_t alias_count = 0;
  bool watched = false;    // token is live: Unwatch() at reclaim
  bool inherited = false;  // from the parent process: never dereg
  // A CLOCK pass found it referenced at least once (admission.h: an entry
  // invalidated without any hit was a wasted registration).
  bool hit_seen = false;
  // Admission duels (Cache::AdmitLocked) this entry won as CLOCK's victim
  // since the hand last found it referenced. INVARIANT: at most
  // kMaxDuelsWithoutHit; reset to 0 by a referenced pass and at kValid.
  uint8_t duels_won = 0;
  // Pin-once memory's registration (Cache::MemAlloc): never on lru_, so
  // CLOCK eviction and regcache_flush() never take it; it leaves the cache
  // by invalidation, the pool's release or destroy. Cleared at kFree.
  bool pool = false;
  // A churn lane's own entry (ChurnLane::entry): set once when
  // allocated and never cleared; it never returns to the arena, and moves
  // only between kFree and kPrivate, outside mu_ (Cache::GetChurnLane()).
  bool lane = false;
  // Hold-scan marks: set to the scan's unique number when a hold on this
  // entry was seen. Reclaim scans (serialised by reclaim_mu_) and eviction
  // scans (under mu_) run concurrently, so each kind has its own field: a
  // shared one let an eviction scan overwrite a reclaim's mark and the
  // reclaim deregister a held entry.
  std::atomic<uint64_t> held_mark{0};
  std::atomic<uint64_t> evict_mark{0};
  Entry* arena_next = nullptr;  // Arena free list
};

// The next state of `e`, in a new generation. Under the cache mutex (a lane
// entry's own moves excepted, see above); the
// release store publishes every field written before it.
inline void SetState(Entry* e, EntryState state) {
  const uint64_t s = e->seq.load(std::memory_order_relaxed);
  e->seq.store(SeqMake(SeqGeneration(s) + 1, state), std::memory_order_release);
}

inline Entry* EntryOfNode(IntervalNode* n) {
  return reinterpret_cast<Entry*>(reinterpret_cast<char*>(n) -
                                  offsetof(Entry, node));
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_ENTRY_H_
