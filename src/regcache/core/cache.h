// SPDX-License-Identifier: BSD-2-Clause
// The registration cache: lookup structures, the miss path, invalidation,
// eviction and reclamation. The lock-free hit path is in cache_hit.h.
//
// Data structures (docs/design.md has the picture):
//   entries_   Arena<Entry>: every registration, type-stable.
//   tree_      IntervalTree of valid entries: the authoritative lookup, used
//              by the miss path and by invalidation. Guarded by mu_.
//   index_     HashIndex: first page (and alias pages) -> entry, read
//              without locks by the hit path, written under mu_.
//   threads_   Arena<ThreadState>: per-thread hold slots (the handles).
//   lru_       valid entries, most recently inserted first (CLOCK hand at
//              the tail). Guarded by mu_.
//   zombies_   entries out of every lookup structure, waiting for their
//              holds to drain before deregistration. Guarded by mu_.
//   churn_, sketch_  the admission signals (admission.h): which misses
//              are cached. Guarded by mu_.
//   pool_      pin-once memory (pool.cc): blocks by address and the free
//              ones by size. Guarded by pool_mu_. Each block's registration
//              is an entry in tree_ and index_ (so gets inside it hit) but
//              not on lru_ (so it is never evicted).
//
// Locking protocol:
//   pool_mu_ before reclaim_mu_ before mu_, never the other way. pool_mu_
//   is never held across a registrar call or munmap either (the pool maps,
//   registers and unmaps with no lock held).
//   reclaim_mu_ before mu_, never the other way. mu_ is never held across a
//   registrar call, a monitor Watch/Unwatch, malloc/free, or anything else
//   that may munmap memory, because munmap may block until the userfaultfd
//   event thread reads the event, and that thread takes mu_ (through
//   InvalidateRange) to apply it. reclaim_mu_ is held across deregistration
//   (which may munmap); the event thread never takes it.
#ifndef REGCACHE_SRC_REGCACHE_CORE_CACHE_H_
#define REGCACHE_SRC_REGCACHE_CORE_CACHE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_annotations.h"
#include "core/admission.h"
#include "core/arena.h"
#include "core/entry.h"
#include "core/fences.h"
#include "core/hash_index.h"
#include "core/interval_tree.h"
#include "core/pool.h"
#include "core/thread_state.h"
#include "monitor/monitor.h"
#include "regcache/regcache.h"

namespace regcache_internal {

// Per-thread map from cache id to the hold slot this thread tries first in
// that cache; the thread's ThreadState there is OwnerOf(hint). Ids, not
// pointers, so a destroyed cache's address reused by a new cache never
// matches a stale slot. Keeping the slot, not the state, here saves the hit
// path a dependent load.
struct TlsCacheRef {
  uint64_t cache_id;
  HoldSlot* hint;
};
inline constexpr int kTlsWays = 4;
extern __thread TlsCacheRef t_cache_refs[kTlsWays]
    __attribute__((tls_model("initial-exec")));

// The identity of the calling thread as stored in ThreadState::owner_key.
inline const void* ThisThreadKey() { return &t_cache_refs[0]; }

// Internal status: the miss raced with an invalidation; look up again.
inline constexpr int kRetryMiss = 1;

class Cache;

// What the API layer (src/regcache/create.cc) decided before the cache
// exists: the registrar to use (the caller's, or the ODP registrar the mode
// policy made), the monitor to create and the mode in effect.
struct CacheSetup {
  regcache_registrar registrar{};
  regcache_monitor_kind monitor = REGCACHE_MONITOR_AUTO;
  regcache_mode mode = REGCACHE_MODE_PIN;  // never AUTO
  std::string mode_reason;
  // Why `monitor`, when the API layer knows better than "requested" (ODP
  // set a requested monitor aside); "" lets the cache say.
  std::string monitor_reason;
  // Owns registrar.ctx when the API layer made the registrar; kept alive
  // as long as the cache.
  std::shared_ptr<void> registrar_owner;
  // Prints the statistics at destroy or process exit, when
  // config.print_stats_at_exit asks for them (the API layer formats them).
  void (*print_stats)(Cache* cache) = nullptr;
};

class Cache final : public InvalidationSink {
 public:
  // Returns 0 and *out, or -errno with the thread's error message set.
  // `config` gives the limits and flags; setup.monitor, not config.monitor,
  // says which monitor to create.
  static int Create(const CacheSetup& setup, const regcache_config& config,
                    Cache** out);
  // Deregisters everything and deletes the cache. -EBUSY if handles were
  // still held (they are deregistered anyway).
  int Destroy();

  // The hit path (cache_hit.h). Thread-safe.
  __attribute__((always_inline)) inline int Get(const void* addr, size_t length,
                                                uint32_t access,
                                                HoldSlot** out);
  __attribute__((always_inline)) inline int Put(HoldSlot* slot);
  inline bool WatchStillValid(const Entry* e);

  int Invalidate(const void* addr, size_t length);
  int Flush();

  // Pin-once memory (pool.cc, regcache_mem_alloc and friends). `flags` and
  // `length` are checked by the API layer. Thread-safe, not with Destroy().
  int MemAlloc(size_t length, uint32_t flags, void** out) RC_EXCLUDES(mu_);
  int MemFree(void* addr) RC_EXCLUDES(mu_);
  int MemTrim() RC_EXCLUDES(mu_);
  // The monitor's kernel-side counters (Monitor::KernelCounters), for
  // integrations' statistics. Thread-safe.
  int KernelCounters(KernelCounts* out) {
    return monitor_->KernelCounters(out);
  }
  void Stats(struct regcache_stats* out);
  // Prints the statistics if the configuration asks for them at exit.
  void PrintStatsIfAsked() {
    if (config_.print_stats_at_exit != 0 && print_stats_ != nullptr)
      print_stats_(this);
  }
  int print_stats_format() const { return config_.print_stats_at_exit; }

  // InvalidationSink: called by monitor event threads and by Invalidate().
  // Takes mu_, never allocates, never deregisters.
  void InvalidateRange(uint64_t first, uint64_t last,
                       regcache_inval_reason reason) override RC_EXCLUDES(mu_);

  // Fork handling (see cache_fork.cc).
  void ForkPrepare();
  void ForkParent();
  void ForkChild();

  // Test hooks. CheckInvariants() is for quiescent points (no get or put
  // running): a hit in progress may hold a slot on an entry it is about to
  // find stale.
  bool CheckInvariants(std::string* why) RC_EXCLUDES(mu_);
  bool CheckPoolInvariants(std::string* why) RC_EXCLUDES(pool_mu_, mu_);
  size_t zombie_count() RC_EXCLUDES(mu_);
  // Gets the churn lanes served, over every thread.
  uint64_t lane_gets() const;
  Cache* registry_next = nullptr;  // guarded by the global registry mutex
  uint64_t id() const { return id_; }
  const regcache_config& config() const { return config_; }
  const char* registrar_name() const {
    return registrar_.name != nullptr ? registrar_.name : "(unnamed)";
  }

  ~Cache();  // only through Destroy() or a failed Create()

 private:
  Cache() = default;

  // Slow paths.
  int BadRequest(const void* addr, size_t length, uint32_t access);
  int BadHandle(const HoldSlot* slot, bool already_released);
  __attribute__((noinline)) int GetSlow(uint64_t first, uint64_t last,
                                        uint32_t access, HoldSlot** out);
  // What a miss does with its registration (admission.h).
  enum class Admit {
    kCache,            // watch it and keep it
    kBypassChurn,      // serve uncached: the range churns (ChurnTable)
    kBypassFrequency,  // serve uncached: a full cache keeps its victim
  };
  // Decides for a miss of [first, last] and, when the registration is to
  // be kept and the cache is full, evicts to make room: the victims go on
  // zombies_ (*evicted says whether any did), or onto *own_victims when it
  // is not null (see GetSlow()). `count` is false for a retried miss, which
  // the signals have already counted.
  Admit AdmitLocked(uint64_t first, uint64_t last, bool count,
                    Entry** own_victims, bool* evicted) RC_REQUIRES(mu_);
  // `own_victims`: entries this miss evicted and deregistered itself; Miss()
  // returns them to the arena in the critical section that inserts.
  // A registration whose watch went stale while it was being made, kept by
  // GetSlow() until its retry has registered again. Deregistering it first
  // could undo what made the watch go stale, so that every retry would race
  // the same way: a registrar whose registration splits its VMA
  // (libibverbs' fork protection, madvise(MADV_DONTFORK)) fires the mmu
  // notifiers over the 2 MiB around each split point, and the
  // deregistration (MADV_DOFORK) merges the VMA again.
  struct RacedRegistration {
    regcache_mr mr{};
    bool live = false;
  };
  // Deregisters a live raced registration (no lock held).
  void DropRaced(RacedRegistration* raced) RC_EXCLUDES(mu_);
  // `raced`: the previous attempt's raced registration, deregistered once
  // this attempt has registered; this attempt's own goes there when it
  // races (kRetryMiss).
  int Miss(uint64_t first, uint64_t last, uint32_t access, ThreadState* ts,
           uint64_t inval_seq_at_start, Admit admit, Entry* own_victims,
           RacedRegistration* raced, HoldSlot** out);
  // The rest of a get that admission serves uncached: `e` (kPrivate) and
  // `slot` (holding it, kSlotPrivate) were taken in GetSlow()'s critical
  // section; this registers and fills them in without mu_, which the
  // entry's single holder makes safe. On failure both go back.
  int GetUncached(Entry* e, HoldSlot* slot, uint64_t first, uint64_t last,
                  uint32_t access, Admit admit, HoldSlot** out)
      RC_EXCLUDES(mu_);
  // Unwatches (if watched) and deregisters (unless inherited) one unheld
  // entry, saying on stderr if the registrar failed (no lock held).
  void Deregister(Entry* e) RC_EXCLUDES(mu_);
  // Deregister() for each entry of a list of unheld zombies.
  void DeregisterList(Entry* list) RC_EXCLUDES(mu_);
  // Returns a deregistered list's entries to the arena.
  void FreeListLocked(Entry* list) RC_REQUIRES(mu_);
  // A newly allocated entry's new life: its range, registration and watch,
  // unreferenced, no aliases, counted in entries_now_ and
  // pinned_bytes_now_. The caller then sets its state (and e->pool).
  void FillEntryLocked(Entry* e, uint64_t first, uint64_t last,
                       const regcache_mr& mr, const WatchToken& token,
                       bool watched) RC_REQUIRES(mu_);
  // `fn` names the API call in messages.
  int RegisterWithEviction(uint64_t first, uint64_t last, uint32_t access,
                           regcache_mr* mr, const char* fn = "regcache_get");
  void BackOff(Entry* e);
  // Monitor::WaitForPending() in this thread; invalidations it applies are
  // reclaimed here rather than by the reaper.
  void ApplyPendingInline() RC_EXCLUDES(mu_);
  // Cold continuations of Get(), each reached by a tail call so the hit
  // path itself needs no stack frame.
  __attribute__((noinline, cold)) int GetAnnouncingTable(ThreadState* ts,
                                                         uint64_t first,
                                                         uint64_t last,
                                                         uint32_t access,
                                                         HoldSlot** out);
  __attribute__((noinline, cold)) int GetWithBusyHint(ThreadState* ts,
                                                      uint64_t first,
                                                      uint64_t last,
                                                      uint32_t access,
                                                      HoldSlot** out);
  // The hit path's probe of one bucket (R1-R5 in cache_hit.h). kRaced:
  // the hold was taken on *raced but the bucket changed under it; release
  // and back off.
  enum class Probe { kHit, kNext, kEnd, kRaced };
  Probe TryBucket(Bucket& b, uint64_t key, uint64_t last, uint32_t access,
                  HoldSlot* slot, Entry** raced);
  // Get() after its first bucket was another range's: probes on.
  __attribute__((noinline)) int GetProbing(HoldSlot* slot, uint64_t first,
                                           uint64_t last, uint32_t access,
                                           HoldSlot** out);
  // Get() found no cached range: a churn lane of the calling thread serves
  // it if one has the range, else GetSlow().
  __attribute__((noinline)) int GetMiss(ThreadState* ts, HoldSlot* slot,
                                        uint64_t first, uint64_t last,
                                        uint32_t access, HoldSlot** out);
  // An uncached get of a churning range without mu_ (docs/design.md,
  // "The churn lane"): `lane` of `ts` has gets left for `first`, and
  // `slot`, a free slot of `ts`, will hold its entry.
  int GetChurnLane(ChurnLane* lane, HoldSlot* slot, uint64_t first,
                   uint64_t last, uint32_t access, HoldSlot** out)
      RC_EXCLUDES(mu_);
  // After admission served a get of `first` uncached for churn: gives
  // `ts` a lane with the range's gets up to its next probe, taking over a
  // way (and giving its unused gets back to the churn table) if needed.
  void GrantLaneLocked(ThreadState* ts, uint64_t first) RC_REQUIRES(mu_);
  // Gives the churn table back what a lane of `ts` has left for `first`.
  void ReturnLaneLocked(ThreadState* ts, uint64_t first) RC_REQUIRES(mu_);
  __attribute__((noinline, cold)) int BackOffAndGetSlow(
      HoldSlot* slot, Entry* e, uint64_t first, uint64_t last, uint32_t access,
      HoldSlot** out);

  ThreadState* ThreadStateForCaller();
  TlsCacheRef* FindTlsRef() const;  // this thread's way for the cache, or null
  HoldSlot* FindFreeSlot(ThreadState* ts);
  // A free slot of `ts` (chaining another state when all are held) now
  // holding `e`, with `flags` (kSlotPrivate for an uncached get's entry).
  HoldSlot* TakeSlotLocked(ThreadState* ts, Entry* e, uint32_t flags = 0)
      RC_REQUIRES(mu_);
  // The put of an uncached get: deregisters its kPrivate entry and frees
  // it. Returns 0 (Put()'s result).
  __attribute__((noinline)) int ReleasePrivate(Entry* e) RC_EXCLUDES(mu_);
  // A kPrivate entry whose registration is gone (or was never made) goes
  // back: a lane's to kFree for its thread to take again, any other to
  // the arena.
  void FreePrivate(Entry* e) RC_EXCLUDES(mu_);

  Entry* FindCoveringLocked(uint64_t first, uint64_t last, uint32_t access)
      RC_REQUIRES(mu_);
  void AddAliasLocked(Entry* e, uint64_t first, HashTable** retired)
      RC_REQUIRES(mu_);
  // kValid -> kZombie: out of tree, index and LRU, onto zombies_ (or onto
  // *own_list, for a caller that reclaims it itself: see GetSlow()).
  void KillLocked(Entry* e, Entry** own_list = nullptr) RC_REQUIRES(mu_);
  void RecordInvalidationLocked(uint64_t first, uint64_t last) RC_REQUIRES(mu_);
  bool InvalidatedSinceLocked(uint64_t seq, uint64_t first, uint64_t last)
      RC_REQUIRES(mu_);
  // Whether the cached entries, plus `extra_entries` more of `extra_bytes`
  // in all, exceed max_entries or max_bytes.
  bool OverLimitsLocked(size_t extra_entries = 0,
                        uint64_t extra_bytes = 0) const RC_REQUIRES(mu_);
  // Evicts unused entries (CLOCK) until the limits hold with room for the
  // extra ones, or every unused entry when `all_unused`. Returns how many.
  // `hold_mark`: a ScanHolds() mark of Entry::evict_mark taken under this
  // hold of mu_, or 0 to scan now.
  size_t EvictLocked(bool all_unused, size_t extra_entries = 0,
                     uint64_t extra_bytes = 0, uint64_t hold_mark = 0,
                     Entry** own_list = nullptr) RC_REQUIRES(mu_);
  // The CLOCK hand: from the tail, moves entries that get a second chance
  // (held per `hold_mark`, or referenced: the bit is cleared and the hit
  // credited in sketch_) to the head, and returns the first entry that may
  // be evicted, left in place; nullptr when *budget steps found none.
  Entry* ClockVictimLocked(uint64_t hold_mark, size_t* budget) RC_REQUIRES(mu_);
  void MoveToHeadLocked(Entry* e) RC_REQUIRES(mu_);
  // A fresh mark with every held entry's evict_mark set to it.
  uint64_t MarkHeldLocked() RC_REQUIRES(mu_);
  bool TestAndClearReferencedLocked(Entry* e) RC_REQUIRES(mu_);
  // Whether `e` served a hit since it was inserted (reads, never clears,
  // the reference bits).
  bool EverHitLocked(Entry* e) RC_REQUIRES(mu_);
  // Stores `mark` into (entry->*field) for every entry some slot holds.
  void ScanHolds(uint64_t mark, std::atomic<uint64_t> Entry::*field);
  // Whether a thread other than the caller owns a live ThreadState, i.e.
  // could be between R3 and R5 of the hit path (or announcing a table).
  bool OtherThreadsMayHitLocked() const RC_REQUIRES(mu_);
  // The reclaimer's side of the hold (and table hazard) protocol, for a
  // batch taken under mu_ together with `other_threads`.
  static void FenceAgainstHitPaths(bool other_threads);

  // Deregisters zombies that no thread holds. Takes reclaim_mu_ then mu_.
  void ReclaimZombies() RC_EXCLUDES(mu_);
  void FreeRetiredTables() RC_EXCLUDES(mu_);
  void AdoptRetiredLocked(HashTable* list) RC_REQUIRES(mu_);
  void ReaperLoop();
  void WakeReaper();
  void StopReaper();
  // Starts the reaper thread (none with monitor none), as StartEventThread()
  // starts a monitor's: named, every signal blocked, and running before
  // this returns. -EAGAIN with *why set if the thread cannot be made.
  int StartReaper(std::string* why);
  void HandleForkInChild() RC_EXCLUDES(mu_);
  // HandleForkInChild() if this is a fork child that has not yet forgotten
  // its parent's entries. Before anything that may deregister outside the
  // slow get and the pool calls (which read the gate for more than this):
  // the registrations are the parent's, shared through the inherited fd.
  void ForgetParentIfForked() RC_EXCLUDES(mu_) {
    if (gate_.load(std::memory_order_acquire) & kGateForked)
      HandleForkInChild();
  }

  // The pool (pool.cc).
  // Applies monitor events, a pending fork or destroy before a pool call:
  // -ESHUTDOWN while destroying.
  int PoolPrologue(const char* fn);
  // A free block of `kind` (one of `kinds`) that fits `length` and is still
  // the pool's, marked allocated; else nullptr. Lost blocks met on the way
  // are forgotten.
  PoolBlock* TakeFreeBlock(size_t length, uint32_t flags) RC_EXCLUDES(mu_);
  // Reserves room in the pool's limits for a new block of `length` bytes,
  // returning free blocks to the system while that is what stands in the
  // way. 0, or -ENOMEM with the message.
  int ReservePoolRoom(size_t length) RC_EXCLUDES(pool_mu_, mu_);
  // Whether a new block of `length` bytes fits the limits (pin mode:
  // max_bytes; always: max_entries).
  bool PoolFitsLocked(size_t length) const RC_REQUIRES(pool_mu_);
  void UnreservePoolRoom(size_t length) RC_EXCLUDES(pool_mu_);
  // Registers a mapping and publishes it as a pool entry: 0 and *block.
  int RegisterPoolBlock(const PoolMapping& m, PoolBlock* block)
      RC_EXCLUDES(mu_);
  // Whether the block's registration is still the pool's.
  bool BlockIsOursLocked(const PoolBlock* b) const RC_REQUIRES(mu_);
  // Takes every free block off the pool's books; release them with
  // ReleaseBlocks() once pool_mu_ is dropped.
  void DetachFreeBlocksLocked(std::vector<PoolBlock*>* out)
      RC_REQUIRES(pool_mu_);
  void RemoveFreeLocked(PoolBlock* b) RC_REQUIRES(pool_mu_);
  // Deregisters and unmaps blocks that are off the books, and deletes
  // them; a lost block is only deleted. Returns how many were unmapped.
  size_t ReleaseBlocks(const std::vector<PoolBlock*>& blocks)
      RC_EXCLUDES(pool_mu_, mu_);
  // Returns every free block to the system. How many.
  size_t TrimFreeBlocks() RC_EXCLUDES(pool_mu_, mu_);
  // At destroy: takes every block off the books and deletes it; returns
  // the mappings that are still the pool's, to unmap once every entry is
  // deregistered.
  std::vector<PoolMapping> DetachPoolAtDestroy() RC_EXCLUDES(pool_mu_, mu_);

  // ---- Read-mostly, read by every hit (keep together) ----
  alignas(64) std::atomic<uint32_t> gate_{0};  // kGate* bits (monitor.h)
#if defined(__x86_64__)
  // x86-64 Linux has one base page size; a constant saves the hit path a
  // load and a register. Create() checks sysconf() agrees.
  static constexpr uint64_t page_mask_ = 4095;
#else
  uint64_t page_mask_ = 4095;
#endif
  uint64_t id_ = 0;
  // True when the monitor keeps per-range generation words (kmod): the hit
  // path then also checks the entry's word (one more load).
  bool range_generations_ = false;
  // Entries in the zombie state (on zombies_ or in a reclaim batch), so
  // Put() reads an entry only while some entry is waiting to be reclaimed.
  std::atomic<uint64_t> zombies_now_{0};
  HashIndex index_;
  Arena<ThreadState> threads_;

  // ---- Set at creation ----
  alignas(64) regcache_registrar registrar_{};
  regcache_config config_{};
  std::unique_ptr<Monitor> monitor_;
  regcache_monitor_kind monitor_kind_ = REGCACHE_MONITOR_NONE;
  std::string monitor_note_;  // why this monitor was chosen
  // The mode in effect (pin or ODP), why, and what owns registrar_'s ctx
  // when the API layer replaced the caller's registrar (CacheSetup).
  regcache_mode mode_ = REGCACHE_MODE_PIN;
  std::string mode_reason_;
  std::shared_ptr<void> registrar_owner_;
  void (*print_stats_)(Cache* cache) = nullptr;

  // The pool's books. Lock order: pool_mu_, reclaim_mu_, mu_.
  Mutex pool_mu_ RC_ACQUIRED_BEFORE(reclaim_mu_);
  // Every block, by base address.
  std::map<uint64_t, PoolBlock*> pool_blocks_ RC_GUARDED_BY(pool_mu_);
  // The free ones, by length.
  std::multimap<size_t, PoolBlock*> pool_free_ RC_GUARDED_BY(pool_mu_);
  // INVARIANT: pool_bytes_ == the lengths of pool_blocks_ plus the
  // reservations of allocations under way; pool_count_ likewise counts
  // blocks. These are what the limits are checked against.
  size_t pool_bytes_ RC_GUARDED_BY(pool_mu_) = 0;
  size_t pool_count_ RC_GUARDED_BY(pool_mu_) = 0;

  // Serialises ReclaimZombies. Lock order: reclaim_mu_, then mu_.
  Mutex reclaim_mu_ RC_ACQUIRED_BEFORE(mu_);
  Mutex mu_;
  Arena<Entry> entries_ RC_GUARDED_BY(mu_);
  IntervalTree tree_ RC_GUARDED_BY(mu_);
  Entry* lru_head_ RC_GUARDED_BY(mu_) = nullptr;  // most recent
  Entry* lru_tail_ RC_GUARDED_BY(mu_) = nullptr;  // CLOCK hand
  Entry* zombies_ RC_GUARDED_BY(mu_) = nullptr;
  size_t zombie_count_ RC_GUARDED_BY(mu_) = 0;
  // INVARIANT: valid_entries_/valid_bytes_ == count/sum of lengths of the
  // entries in tree_; pool_entries_ of them are pool entries (not on lru_).
  size_t valid_entries_ RC_GUARDED_BY(mu_) = 0;
  size_t valid_bytes_ RC_GUARDED_BY(mu_) = 0;
  size_t pool_entries_ RC_GUARDED_BY(mu_) = 0;
  // Recent invalidations, so a miss can tell whether its range was
  // invalidated while it was registering without the lock.
  static constexpr int kRecentInvalidations = 64;
  uint64_t inval_seq_ RC_GUARDED_BY(mu_) = 0;
  uint64_t recent_first_[kRecentInvalidations] RC_GUARDED_BY(mu_) = {};
  uint64_t recent_last_[kRecentInvalidations] RC_GUARDED_BY(mu_) = {};
  HashTable* retired_tables_ RC_GUARDED_BY(mu_) = nullptr;
  std::atomic<uint64_t> mark_counter_{0};
  // Admission (admission.h; the tables are at the end, out of the way of
  // the fields every miss touches). adaptive_ is set at creation.
  bool adaptive_ = true;

  // Statistics updated outside the hit path.
  std::atomic<uint64_t> misses_{0}, registrations_{0}, deregistrations_{0},
      registration_errors_{0}, evictions_{0}, uncacheable_{0},
      uncached_churn_{0}, uncached_admission_{0}, registration_ns_{0};
  std::atomic<uint64_t> invalidations_[REGCACHE_INVAL_NREASONS] = {};
  std::atomic<uint64_t> entries_now_{0}, pinned_bytes_now_{0};
  std::atomic<uint64_t> mem_allocs_{0}, mem_reuses_{0};
  std::atomic<uint64_t> mem_kind_allocs_[kPoolKinds] = {};
  std::atomic<uint64_t> mem_kind_bytes_[kPoolKinds] = {};
  std::atomic<uint64_t> mem_bytes_now_{0}, mem_free_bytes_now_{0};

  // Background reaper ("regcache-reap"): deregisters invalidated, unused
  // entries promptly.
  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_wake_ = false;  // guarded by reaper_mu_
  bool reaper_stop_ = false;  // guarded by reaper_mu_
  std::thread reaper_;
  std::atomic<bool> caching_disabled_{false};  // monitor lost after fork

  FrequencySketch sketch_ RC_GUARDED_BY(mu_);
  ChurnTable churn_ RC_GUARDED_BY(mu_);  // 6 KiB
};

}  // namespace regcache_internal

#include "core/cache_hit.h"  // IWYU pragma: export

#endif  // REGCACHE_SRC_REGCACHE_CORE_CACHE_H_
