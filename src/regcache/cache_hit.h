// SPDX-License-Identifier: BSD-2-Clause
// The lock-free hit path: Cache::Get() and Cache::Put().
//
// A hit takes no lock and makes no system call. It is a hash probe, a
// validation of the entry found, and a hold taken in a slot that only this
// thread writes. The protocol (states in entry.h, fences in fences.h):
//
//   Reader (Get)                         Invalidator (under mu_) / reclaimer
//   ------------                         ----------------------------------
//   R1 s = e->seq           (valid, g)   W1 remove e from tree and index
//   R2 check e covers the request        W2 e->seq = (g+1, zombie)
//   R3 slot->entry = e; slot->held = 1   W3 push e on zombies_
//   R4 LightFence()                      --- later, ReclaimZombies():
//   R5 e->seq == s ? and the monitor's   W4 take the zombie list
//      generation word unchanged ?       W5 HeavyFence()
//      yes: hit   no: release, slow path W6 scan every slot; e held -> keep
//                                        W7 not held: deregister, kFree
//
// HeavyFence() acts as a full barrier in every running thread. For a given
// reader, that barrier falls either after R3 (then W6 sees the hold and e is
// kept until the reader's Put) or before R5 (then R5 sees W2 and the reader
// backs off, never using e). A reader that backs off may have been seen by
// W6; it calls ReclaimZombies() itself so e is not stranded.
//
// Put() is the mirror: P1 slot->held = 0, P2 LightFence(), P3 load
// e->seq. If a reclaim scan missed the hold (P1 before its barrier), P3
// comes after that barrier and sees the zombie, so the putter reclaims.
//
// One interleaving of a hit racing munmap under the kmod monitor:
//   T1: R1..R3 on e                 T2: munmap() -> kernel bumps gen(e)
//   T1: R5 sees gen(e) changed      T2: munmap returns
//   T1: releases slot, slow path    reaper: event -> W1..W7, e dereg'd
// and the same race with T1's R5 before the kernel's bump is T1 using memory
// while T2 unmaps it: the application's own race, as with plain ibv_reg_mr.
#ifndef REGCACHE_SRC_REGCACHE_CACHE_HIT_H_
#define REGCACHE_SRC_REGCACHE_CACHE_HIT_H_

namespace regcache_internal {

inline ThreadState* Cache::FindThreadState() const {
  for (int i = 0; i < kTlsWays; ++i) {
    if (t_cache_refs[i].cache_id == id_) return t_cache_refs[i].state;
  }
  return nullptr;
}

inline int Cache::Get(const void* addr, size_t length, uint32_t access,
                      HoldSlot** out) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr);
  if (__builtin_expect(length == 0 || addr == nullptr ||
                           (access & ~uint32_t{REGCACHE_ACCESS_ALL}) != 0 ||
                           a + (length - 1) < a,
                       0)) {
    return BadRequest(addr, length, access);
  }
  const uint64_t first = a & ~page_mask_;
  const uint64_t last = (a + (length - 1)) | page_mask_;
  if (__builtin_expect(gate_.load(std::memory_order_acquire) != 0, 0)) {
    return GetSlow(first, last, access, out);
  }
  ThreadState* ts = t_cache_refs[0].cache_id == id_ ? t_cache_refs[0].state
                                                    : FindThreadState();
  if (__builtin_expect(ts == nullptr, 0)) return GetSlow(first, last, access, out);

  // Announce the table before reading it (see hash_index.h).
  HashTable* t = index_.table();
  if (ts->table_hazard.load(std::memory_order_relaxed) != t) {
    ts->table_hazard.store(t, std::memory_order_relaxed);
    LightFence();
    if (index_.table() != t) return GetSlow(first, last, access, out);
  }

  const uint64_t page = first >> page_shift_;
  const uint64_t key = BucketKey(page);
  for (size_t i = HashPage(page, t->mask);; i = (i + 1) & t->mask) {
    const uint64_t k = t->buckets[i].key.load(std::memory_order_acquire);
    if (k == kBucketEmpty) break;
    if (k != key) continue;
    Entry* e = t->buckets[i].entry.load(std::memory_order_relaxed);
    const uint64_t s = e->seq.load(std::memory_order_acquire);      // R1
    if (SeqState(s) != kValid) continue;
    if (e->first.load(std::memory_order_relaxed) > first ||         // R2
        e->last.load(std::memory_order_relaxed) < last ||
        (access & ~e->access.load(std::memory_order_relaxed)) != 0) {
      continue;
    }
    HoldSlot* slot = &ts->slots[ts->hint];
    if (__builtin_expect(slot->held.load(std::memory_order_relaxed) != 0, 0)) {
      slot = FindFreeSlot(ts);
      if (slot == nullptr) break;  // every slot held: slow path
    }
    slot->entry.store(e, std::memory_order_relaxed);                // R3
    slot->held.store(1, std::memory_order_release);
    LightFence();                                                    // R4
    std::atomic_thread_fence(std::memory_order_acquire);
    const std::atomic<uint64_t>* gen =
        e->watch_generation.load(std::memory_order_relaxed);
    if (__builtin_expect(e->seq.load(std::memory_order_acquire) != s ||  // R5
                             gen->load(std::memory_order_acquire) !=
                                 e->watch_expected.load(std::memory_order_relaxed),
                         0)) {
      slot->held.store(0, std::memory_order_release);
      BackOff(e);
      return GetSlow(first, last, access, out);
    }
    if (e->lru_epoch.load(std::memory_order_relaxed) == 0) {
      e->lru_epoch.store(1, std::memory_order_relaxed);  // CLOCK ref bit
    }
    ts->hint = slot->index;
    ts->counters.AddHit();
    *out = slot;
    return 0;
  }
  return GetSlow(first, last, access, out);
}

inline int Cache::Put(HoldSlot* slot) {
  // Reject pointers that are not slots without dereferencing them.
  const uintptr_t off = reinterpret_cast<uintptr_t>(slot) -
                        reinterpret_cast<uintptr_t>(threads_.base());
  const uintptr_t in_state = off % sizeof(ThreadState);
  if (__builtin_expect(off >= threads_.used() * sizeof(ThreadState) ||
                           in_state >= sizeof(ThreadState::slots) ||
                           in_state % sizeof(HoldSlot) != 0,
                       0)) {
    return BadHandle(slot, false);
  }
  Entry* e = slot->entry.load(std::memory_order_relaxed);
  ThreadState* owner = slot->owner;
  if (owner->owner_key.load(std::memory_order_relaxed) == ThisThreadKey()) {
    if (__builtin_expect(slot->held.load(std::memory_order_relaxed) != 1, 0)) {
      return BadHandle(slot, true);
    }
    slot->held.store(0, std::memory_order_release);                 // P1
  } else {
    uint32_t one = 1;
    if (!slot->held.compare_exchange_strong(one, 0,
                                            std::memory_order_acq_rel)) {
      return BadHandle(slot, true);
    }
  }
  LightFence();                                                      // P2
  if (__builtin_expect(
          SeqState(e->seq.load(std::memory_order_acquire)) != kValid, 0)) {  // P3
    PutSlow(e);
  }
  return 0;
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CACHE_HIT_H_
