// SPDX-License-Identifier: BSD-2-Clause
// What a cache does across fork().
//
// The child inherits a copy of the cache, but not its registrations' right
// to exist: for ibverbs the MRs belong to the parent (deregistering them in
// the child would destroy the parent's, since the device fd is shared), the
// monitor's fd and threads are gone, and memory locks are not inherited. So
// the child forgets every entry without deregistering it ("inherited"),
// drops the other threads' holds (those threads do not exist), restarts its
// monitor and reaper, and then caches afresh. Handles the forking thread held
// stay valid in the child until put, like any other zombie.
#include <cstdio>
#include <new>

#include "base/errors.h"
#include "core/cache.h"

namespace regcache_internal {

void Cache::ForkPrepare() RC_NO_TSA {
  pool_mu_.Lock();
  reclaim_mu_.Lock();
  mu_.Lock();
  reaper_mu_.lock();
}

void Cache::ForkParent() RC_NO_TSA {
  reaper_mu_.unlock();
  mu_.Unlock();
  reclaim_mu_.Unlock();
  pool_mu_.Unlock();
}

void Cache::ForkChild() RC_NO_TSA {
  reaper_mu_.unlock();
  mu_.Unlock();
  reclaim_mu_.Unlock();
  pool_mu_.Unlock();
  gate_.fetch_or(kGateForked, std::memory_order_release);
}

void Cache::HandleForkInChild() {
  size_t forgotten = 0;
  {
    MutexLock reclaim(&reclaim_mu_);
    MutexLock l(&mu_);
    if (!(gate_.load() & kGateForked)) return;  // another thread did it
    // Every live entry becomes an inherited zombie: the cached ones, then
    // the memory pool's (all that is left in the tree). The pool's blocks
    // are then lost to it: memory the parent allocated is ordinary memory
    // here, which the pool never unmaps (the module's contiguous memory is
    // not even inherited).
    while (lru_tail_ != nullptr) {
      Entry* e = lru_tail_;
      KillLocked(e);
      ++forgotten;
    }
    Entry* pool_entries = nullptr;
    tree_.ForEachOverlap(0, UINT64_MAX, [&](IntervalNode* n) {
      Entry* e = EntryOfNode(n);
      e->zombie_next = pool_entries;  // scratch link until KillLocked
      pool_entries = e;
      return true;
    });
    while (pool_entries != nullptr) {
      Entry* e = pool_entries;
      pool_entries = e->zombie_next;
      KillLocked(e);
      ++forgotten;
    }
    // Every entry that is not free is the parent's: the zombies, and any a
    // parent thread was reclaiming on its own when it forked (GetSlow()),
    // which no list holds here and which stay allocated for good.
    for (size_t i = 0; i < entries_.used(); ++i) {
      Entry* e = entries_.At(i);
      if (SeqState(e->seq.load(std::memory_order_relaxed)) == kFree) continue;
      e->inherited = true;
      e->watched = false;  // the parent's monitor state is not ours
    }
    // Holds of threads that do not exist here are dropped.
    for (size_t i = 0; i < threads_.used(); ++i) {
      ThreadState* ts = threads_.At(i);
      if (ts->slots[0].owner_key.load() == ThisThreadKey()) continue;
      for (auto& slot : ts->slots) slot.held.store(0);
      ts->SetOwner(nullptr);
      if (ts->live.load() == 1) ts->live.store(0);
    }
    RecordInvalidationLocked(0, UINT64_MAX);
    std::string why;
    if (monitor_->RestartInChild(&why) != 0) {
      // Without a monitor, caching would return stale registrations.
      caching_disabled_ = true;
      fprintf(stderr,
              "regcache: after fork the %s monitor could not restart (%s); "
              "this process now registers per use without caching\n",
              regcache_monitor_name(monitor_kind_), why.c_str());
    }
    // The reaper thread does not exist in the child: forget its handle
    // without joining, and rebuild the condition variable it waited on.
    new (&reaper_) std::thread();
    new (&reaper_cv_) std::condition_variable();
    gate_.fetch_and(~kGateForked, std::memory_order_release);
  }
  invalidations_[REGCACHE_INVAL_FORK].fetch_add(forgotten);
  std::string why;
  if (StartReaper(&why) != 0) {
    // Zombies are then deregistered by the gets and puts that meet them.
    fprintf(stderr,
            "regcache: after fork the reaper thread could not start (%s); "
            "invalidated registrations are released on this process's own "
            "calls\n",
            why.c_str());
  }
  ReclaimZombies();
}

}  // namespace regcache_internal
