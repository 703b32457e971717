// SPDX-License-Identifier: BSD-2-Clause
// The lock-free hit path: Cache::Get() and Cache::Put().
//
// A hit takes no lock and makes no system call. It is a hash probe, a hold
// taken in a slot that only this thread writes, and a re-validation of the
// bucket it found (hash_index.h has the bucket seqlock). The protocol
// (entry states in entry.h, fences in fences.h):
//
//   Reader (Get)                          Invalidator (under mu_) / reclaimer
//   ------------                          ----------------------------------
//   R1 k1,t1 = bucket key, tag            W1 remove e's buckets, erase e
//   R2 bucket's last/access cover the        from the tree
//      request                            W2 e->seq = (g+1, zombie)
//   R3 slot->entry = e; slot->held = 1    W3 push e on zombies_
//   R4 LightFence()                       --- later, ReclaimZombies():
//   R5 k2,t2 = bucket key, tag again;     W4 take the zombie list
//      equal to k1,t1, and (kmod) the     W5 HeavyFence()
//      range's generation unchanged?      W6 scan every slot; e held -> keep
//      yes: hit   no: release, slow path  W7 not held: deregister, kFree
//
// HeavyFence() acts as a full barrier in every running thread. For a given
// reader, that barrier falls either after R3 (then W6 sees the hold and e is
// kept until the reader's Put) or before R5 (then R5 sees W1's changed key and
// the reader backs off, never using e). A reader that backs off may have
// been seen by W6; it calls ReclaimZombies() itself so e is not stranded.
// Every zombie was valid in the index first (a miss that raced with an
// invalidation makes no entry), so every batch needs W5.
//
// Put() is the mirror: P0 read slot->flags, P1 slot->held = 0, P2
// LightFence(), P3 load the cache's zombie count and, only if it is
// non-zero, e->seq. A handle whose flags say kSlotPrivate is an uncached
// get's: its entry was never published, so no other handle can hold it,
// and the put deregisters and frees it at once (ReleasePrivate()) instead
// of P3. The flag lives in the slot, not the entry, so a put never mistakes
// another life of its entry for its own. Only the slow path sets it
// (TakeSlotLocked); the put of such a handle clears it before P1, so a hit
// that takes the slot later (R3 writes only entry and held) finds it clear:
// the owner checks the slot free with an acquire load of `held`, which
// orders a foreign putter's clear (before its releasing compare-exchange)
// before the owner's R3 and so before any put of the new handle. If a reclaim
// scan missed the hold (P1 before its barrier), P3 comes after that barrier
// and sees e on the zombie list, so the putter reclaims it: the last put of
// an invalidated entry deregisters it.
//
// One interleaving of a hit racing munmap under the kmod monitor:
//   T1: R1..R4 on e                 T2: munmap() -> kernel bumps gen(e)
//   T1: R5 sees gen(e) changed      T2: munmap returns
//   T1: releases slot, slow path    reaper: event -> W1..W7, e dereg'd
// and the same race with T1's R5 before the kernel's bump is T1 using memory
// while T2 unmaps it: the application's own race, as with plain ibv_reg_mr.
#ifndef REGCACHE_SRC_REGCACHE_CORE_CACHE_HIT_H_
#define REGCACHE_SRC_REGCACHE_CORE_CACHE_HIT_H_

namespace regcache_internal {

inline TlsCacheRef* Cache::FindTlsRef() const {
  for (int i = 0; i < kTlsWays; ++i) {
    if (t_cache_refs[i].cache_id == id_) return &t_cache_refs[i];
  }
  return nullptr;
}

inline int Cache::Get(const void* addr, size_t length, uint32_t access,
                      HoldSlot** out) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr);
  // Valid iff 1 <= length <= 2^64 - a and a != 0, i.e. length - 1 < -a
  // (unsigned): length 0 makes the left side the maximum, a == 0 makes the
  // right side 0, and the rest is a + length - 1 not overflowing.
  if (__builtin_expect(length - 1 >= 0 - a, 0) ||
      __builtin_expect((access & ~uint32_t{REGCACHE_ACCESS_ALL}) != 0, 0)) {
    return BadRequest(addr, length, access);
  }
  const uint64_t first = a & ~page_mask_;
  const uint64_t last = (a + (length - 1)) | page_mask_;
  if (__builtin_expect(gate_.load(std::memory_order_acquire) != 0, 0)) {
    return GetSlow(first, last, access, out);
  }
  HoldSlot* slot;
  if (__builtin_expect(t_cache_refs[0].cache_id == id_, 1)) {
    slot = t_cache_refs[0].hint;
  } else {
    const TlsCacheRef* ref = FindTlsRef();
    if (__builtin_expect(ref == nullptr, 0))
      return GetSlow(first, last, access, out);
    slot = ref->hint;
  }
  ThreadState* ts = OwnerOf(slot);

  // The table must be announced before it is read (see hash_index.h).
  HashTable* t = index_.table();
  if (__builtin_expect(ts->table_hazard.load(std::memory_order_relaxed) != t,
                       0)) {
    return GetAnnouncingTable(ts, first, last, access, out);
  }
  // Acquire: a foreign put's clearing of slot->flags happens before (see
  // Put()). A plain load on x86-64.
  if (__builtin_expect(slot->held.load(std::memory_order_acquire) != 0, 0)) {
    return GetWithBusyHint(ts, first, last, access, out);
  }

  // Most hits are in the first bucket probed; the rest of the chain is
  // GetProbing()'s, reached by a tail call like every other way out, so
  // this function needs few registers and no stack frame.
  const size_t i = HashFirst(first, t->mask);
  Entry* raced;
  switch (
      TryBucket(t->bucket(i), BucketKey(first), last, access, slot, &raced)) {
    case Probe::kHit:
      slot->AddHit();
      *out = slot;
      return 0;
    case Probe::kNext:
      return GetProbing(slot, first, last, access, out);
    case Probe::kRaced:
      return BackOffAndGetSlow(slot, raced, first, last, access, out);
    case Probe::kEnd:
      break;
  }
  return GetMiss(ts, slot, first, last, access, out);
}

inline Cache::Probe Cache::TryBucket(Bucket& b, uint64_t key, uint64_t last,
                                     uint32_t access, HoldSlot* slot,
                                     Entry** raced) {
  const uint64_t k1 = b.key.load(std::memory_order_acquire);  // R1
  if (k1 == kBucketEmpty) return Probe::kEnd;
  if (k1 != key) return Probe::kNext;
  const uint64_t t1 = b.tag.load(std::memory_order_acquire);
  Entry* e = b.entry.load(std::memory_order_relaxed);
  if (b.last.load(std::memory_order_relaxed) < last ||  // R2
      (access & ~uint32_t(t1 & kTagAccessMask)) != 0) {
    return Probe::kNext;
  }
  slot->entry.store(e, std::memory_order_relaxed);  // R3
  slot->held.store(1, std::memory_order_release);
  LightFence();  // R4
  std::atomic_thread_fence(std::memory_order_acquire);
  if (__builtin_expect(b.key.load(std::memory_order_acquire) != key ||  // R5
                           TagVersion(b.tag.load(std::memory_order_acquire)) !=
                               TagVersion(t1) ||
                           (range_generations_ && !WatchStillValid(e)),
                       0)) {
    *raced = e;
    return Probe::kRaced;
  }
  if (__builtin_expect(!(t1 & kTagReferenced), 0)) {
    b.tag.fetch_or(kTagReferenced, std::memory_order_relaxed);  // CLOCK bit
  }
  return Probe::kHit;
}

inline bool Cache::WatchStillValid(const Entry* e) {
  return e->watch_generation.load(std::memory_order_relaxed)
             ->load(std::memory_order_acquire) ==
         e->watch_expected.load(std::memory_order_relaxed);
}

inline int Cache::Put(HoldSlot* slot) {
  // Reject pointers that are not slots without dereferencing them.
  const uintptr_t off = reinterpret_cast<uintptr_t>(slot) -
                        reinterpret_cast<uintptr_t>(threads_.base());
  const uintptr_t in_state = off & (kThreadStateBytes - 1);
  if (__builtin_expect(off >= threads_.used() * kThreadStateBytes ||
                           in_state < kSlotsOffset ||
                           (in_state & (sizeof(HoldSlot) - 1)) != 0,
                       0)) {
    return BadHandle(slot, false);
  }
  Entry* e = slot->entry.load(std::memory_order_relaxed);
  const uint32_t flags = slot->flags.load(std::memory_order_relaxed);  // P0
  if (__builtin_expect(flags != 0, 0))
    slot->flags.store(0, std::memory_order_relaxed);
  if (slot->owner_key.load(std::memory_order_relaxed) == ThisThreadKey()) {
    if (__builtin_expect(slot->held.load(std::memory_order_relaxed) != 1, 0)) {
      return BadHandle(slot, true);
    }
    slot->held.store(0, std::memory_order_release);  // P1
  } else {
    uint32_t one = 1;
    if (!slot->held.compare_exchange_strong(one, 0,
                                            std::memory_order_acq_rel)) {
      return BadHandle(slot, true);
    }
  }
  LightFence();  // P2
  // A tail call, like every way off this path: Put() needs no stack frame.
  if (__builtin_expect(flags & kSlotPrivate, 0)) return ReleasePrivate(e);
  if (__builtin_expect(zombies_now_.load(std::memory_order_acquire) != 0,
                       0) &&  // P3
      SeqState(e->seq.load(std::memory_order_acquire)) != kValid) {
    ReclaimZombies();  // the last put of an invalidated entry deregisters it
  }
  return 0;
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_CORE_CACHE_HIT_H_
