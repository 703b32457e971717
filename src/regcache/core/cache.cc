// SPDX-License-Identifier: BSD-2-Clause
// The cache's slow paths: creation and destruction, the miss path (which
// registers without holding a lock and then publishes the entry),
// invalidation, CLOCK eviction and reclamation of zombies. The hit path is
// in cache_hit.h and the locking protocol is in cache.h.
#include "core/cache.h"

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/errors.h"
#include "core/registry.h"

namespace regcache_internal {

__thread TlsCacheRef t_cache_refs[kTlsWays]
    __attribute__((tls_model("initial-exec")));

namespace {

std::atomic<uint64_t> g_next_cache_id{1};

// The cache whose pending invalidations this thread is applying inline
// (ApplyPendingInline), and whether any of them killed an entry. Initial-exec
// like t_cache_refs: every miss reads them, and the general model would make
// each access a call to __tls_get_addr.
__thread const Cache* t_applying_for
    __attribute__((tls_model("initial-exec"))) = nullptr;
__thread bool t_applied_kills __attribute__((tls_model("initial-exec"))) =
    false;

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

static_assert(REGCACHE_ACCESS_ALL <= kTagAccessMask,
              "access bits must fit a bucket tag");

constexpr size_t kDefaultEntryCapacity = size_t{1} << 24;
constexpr size_t kMaxThreadStates = 1 << 16;
constexpr int kMaxMissRetries = 8;

}  // namespace

// ---------------------------------------------------------------------------
// Creation and destruction

int Cache::Create(const CacheSetup& setup, const regcache_config& config,
                  Cache** out) {
  if (setup.registrar.reg == nullptr || setup.registrar.dereg == nullptr) {
    return SetError(-EINVAL,
                    "regcache_create: the registrar has no %s callback",
                    setup.registrar.reg == nullptr ? "reg" : "dereg");
  }
  std::unique_ptr<Cache> c(new Cache());
  c->registrar_ = setup.registrar;
  c->config_ = config;
  c->id_ = g_next_cache_id.fetch_add(1);
  const long page = sysconf(_SC_PAGESIZE);
#if defined(__x86_64__)
  if (uint64_t(page) != page_mask_ + 1) {
    return SetError(-EINVAL, "regcache_create: page size %ld, not 4096", page);
  }
#else
  c->page_mask_ = uint64_t(page) - 1;
#endif

  size_t capacity = kDefaultEntryCapacity;
  if (config.max_entries != 0 && config.max_entries * 2 > capacity)
    capacity = config.max_entries * 2;
  int rc;
  c->adaptive_ = config.admission != REGCACHE_ADMISSION_ALWAYS;
  {
    MutexLock l(&c->mu_);
    rc = c->entries_.Init(capacity);
    // Four counters per entry the cache may keep (TinyLFU's sizing); 4096
    // when only the byte limit bounds it.
    if (rc == 0 && c->adaptive_ &&
        !c->sketch_.Init(config.max_entries != 0 && config.max_entries < 65536
                             ? 4 * config.max_entries
                             : 4096))
      rc = -ENOMEM;
  }
  if (rc == 0) rc = c->threads_.Init(kMaxThreadStates);
  if (rc == 0) rc = c->index_.Init(1024);
  if (rc != 0) {
    return SetError(rc, "regcache_create: cannot reserve cache memory: %s",
                    strerror(-rc));
  }

  c->mode_ = setup.mode;
  c->mode_reason_ = setup.mode_reason;
  c->registrar_owner_ = setup.registrar_owner;
  c->monitor_note_ = setup.monitor_reason;
  c->print_stats_ = setup.print_stats;

  // Choose the monitor.
  std::string why_kmod, why_uffd;
  switch (setup.monitor) {
    case REGCACHE_MONITOR_NONE:
      c->monitor_ = CreateNullMonitor();
      break;
    case REGCACHE_MONITOR_KMOD:
      c->monitor_ = CreateKmodMonitor(&why_kmod);
      if (!c->monitor_) {
        return SetError(-ENODEV,
                        "regcache_create: monitor kmod unavailable: %s",
                        why_kmod.c_str());
      }
      break;
    case REGCACHE_MONITOR_UFFD:
      c->monitor_ = CreateUffdMonitor(&why_uffd);
      if (!c->monitor_) {
        return SetError(-ENODEV,
                        "regcache_create: monitor uffd unavailable: %s",
                        why_uffd.c_str());
      }
      break;
    case REGCACHE_MONITOR_AUTO:
      c->monitor_ = CreateKmodMonitor(&why_kmod);
      if (c->monitor_) {
        c->monitor_note_ = "auto: kmod (/dev/regcache is available)";
        break;
      }
      c->monitor_ = CreateUffdMonitor(&why_uffd);
      if (c->monitor_) {
        c->monitor_note_ = "auto: uffd (kmod unavailable: " + why_kmod + ")";
        break;
      }
      return SetError(
          -ENODEV,
          "regcache_create: no invalidation monitor works here "
          "(kmod: %s; uffd: %s); set REGCACHE_MONITOR=none to cache "
          "with explicit invalidation only",
          why_kmod.c_str(), why_uffd.c_str());
    default:
      return SetError(-EINVAL, "regcache_create: unknown monitor %d",
                      int(setup.monitor));
  }
  c->monitor_kind_ = c->monitor_->kind();
  c->range_generations_ = c->monitor_kind_ == REGCACHE_MONITOR_KMOD;
  if (c->monitor_note_.empty())
    c->monitor_note_ =
        std::string(regcache_monitor_name(c->monitor_kind_)) + " (requested)";
  std::string why;
  rc = c->monitor_->Start(c.get(), &c->gate_, &why);
  if (rc != 0) {
    return SetError(rc, "regcache_create: monitor %s failed to start: %s",
                    regcache_monitor_name(c->monitor_kind_), why.c_str());
  }
  rc = c->StartReaper(&why);
  if (rc != 0) {
    c->monitor_->Stop();
    return SetError(rc, "regcache_create: %s", why.c_str());
  }
  RegisterCache(c.get());
  *out = c.release();
  return 0;
}

Cache::~Cache() = default;

int Cache::Destroy() {
  // A fork child that destroys the cache before any other call forgets
  // its parent's entries and threads first: the threads do not exist here.
  ForgetParentIfForked();
  gate_.fetch_or(kGateDestroying);
  UnregisterCache(this);
  PrintStatsIfAsked();
  monitor_->Stop();
  StopReaper();

  // The pool's mappings, decided while every entry is still as it was.
  const std::vector<PoolMapping> pool_mappings = DetachPoolAtDestroy();

  // Every entry still registered goes now, held or not.
  size_t held = 0;
  Entry* all = nullptr;
  {
    MutexLock l(&mu_);
    uint64_t mark = mark_counter_.fetch_add(1) + 1;
    ScanHolds(mark, &Entry::evict_mark);
    for (size_t i = 0; i < entries_.used(); ++i) {
      Entry* e = entries_.At(i);
      uint64_t st = SeqState(e->seq.load(std::memory_order_relaxed));
      if (st == kFree) continue;
      if (e->evict_mark.load(std::memory_order_relaxed) == mark) ++held;
      e->zombie_next = all;
      all = e;
    }
  }
  for (Entry* e = all; e != nullptr; e = e->zombie_next) {
    if (!e->inherited) {
      registrar_.dereg(registrar_.ctx, &e->mr);
      deregistrations_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Then the pool's memory, allocated or free.
  for (const PoolMapping& m : pool_mappings) UnmapPoolMemory(m.base, m.length);
  int rc = 0;
  if (held != 0) {
    rc = SetError(-EBUSY,
                  "regcache_destroy: %zu registration(s) were still held; "
                  "they have been deregistered anyway",
                  held);
    fprintf(stderr, "regcache: %s\n", regcache_last_error());
  }
  HashTable* retired;
  {
    MutexLock l(&mu_);
    retired = retired_tables_;
    retired_tables_ = nullptr;
    entries_.Release();
  }
  while (retired != nullptr) {
    HashTable* next = retired->retired_next;
    HashTable::Destroy(retired);
    retired = next;
  }
  index_.DestroyAll();
  threads_.Release();
  delete this;
  return rc;
}

// ---------------------------------------------------------------------------
// Errors on the fast paths

int Cache::BadRequest(const void* addr, size_t length, uint32_t access) {
  if (length == 0) return SetError(-EINVAL, "regcache_get: length is 0");
  if (addr == nullptr)
    return SetError(-EINVAL, "regcache_get: addr is NULL with length %zu",
                    length);
  if (access & ~uint32_t{REGCACHE_ACCESS_ALL}) {
    return SetError(-EINVAL, "regcache_get: unknown access bits 0x%x",
                    access & ~uint32_t{REGCACHE_ACCESS_ALL});
  }
  return SetError(-EINVAL,
                  "regcache_get: range %p + %zu overflows the address space",
                  addr, length);
}

int Cache::BadHandle(const HoldSlot* slot, bool already_released) {
  if (already_released) {
    return SetError(-EALREADY, "regcache_put: handle %p was already released",
                    static_cast<const void*>(slot));
  }
  return SetError(-EINVAL, "regcache_put: %p is not a handle of this cache",
                  static_cast<const void*>(slot));
}

// ---------------------------------------------------------------------------
// Thread states and hold slots

ThreadState* Cache::ThreadStateForCaller() {
  if (const TlsCacheRef* ref = FindTlsRef()) return OwnerOf(ref->hint);
  ThreadState* ts = LookupThreadStateSlow(id_);
  if (ts == nullptr) {
    MutexLock l(&mu_);
    // Reuse a state orphaned by an exited thread, else make one.
    for (size_t i = 0; i < threads_.used() && ts == nullptr; ++i) {
      ThreadState* cand = threads_.At(i);
      uint32_t zero = 0;
      if (cand->live.compare_exchange_strong(zero, 1)) ts = cand;
    }
    if (ts == nullptr) {
      ts = threads_.Allocate();
      if (ts == nullptr) {
        SetError(-ENOMEM, "regcache: too many threads (%zu) use this cache",
                 kMaxThreadStates);
        return nullptr;
      }
      ts->live.store(1);
    }
    for (ThreadState* s = ts; s != nullptr; s = s->overflow.load())
      s->SetOwner(ThisThreadKey());
  }
  RememberThreadState(id_, ts);
  return ts;
}

HoldSlot* Cache::FindFreeSlot(ThreadState* ts) {
  for (ThreadState* s = ts; s != nullptr;
       s = s->overflow.load(std::memory_order_acquire)) {
    for (int i = 0; i < kSlotsPerThread; ++i) {
      if (s->slots[i].held.load(std::memory_order_relaxed) == 0)
        return &s->slots[i];
    }
  }
  return nullptr;
}

HoldSlot* Cache::TakeSlotLocked(ThreadState* ts, Entry* e, uint32_t flags) {
  HoldSlot* slot = FindFreeSlot(ts);
  if (slot == nullptr) {
    // All held: chain another state owned by this thread.
    ThreadState* extra = threads_.Allocate();
    if (extra == nullptr) return nullptr;
    extra->SetOwner(ThisThreadKey());
    extra->live.store(2);  // never adopted as a thread's primary state
    ThreadState* tail = ts;
    while (tail->overflow.load() != nullptr) tail = tail->overflow.load();
    tail->overflow.store(extra, std::memory_order_release);
    slot = &extra->slots[0];
  }
  slot->entry.store(e, std::memory_order_relaxed);
  slot->flags.store(flags, std::memory_order_relaxed);
  slot->held.store(1, std::memory_order_release);
  return slot;
}

int Cache::ReleasePrivate(Entry* e) {
  ForgetParentIfForked();  // `e` may be the parent's
  Deregister(e);           // never watched
  entries_now_.fetch_sub(1, std::memory_order_relaxed);
  pinned_bytes_now_.fetch_sub(e->mr.length, std::memory_order_relaxed);
  e->inherited = false;
  FreePrivate(e);
  return 0;
}

void Cache::FreePrivate(Entry* e) {
  if (e->lane) {
    SetState(e, kFree);  // release: its thread may take it again
    return;
  }
  MutexLock l(&mu_);
  SetState(e, kFree);
  entries_.Free(e);
}

void Cache::ScanHolds(uint64_t mark, std::atomic<uint64_t> Entry::*field) {
  const size_t n = threads_.used();
  for (size_t i = 0; i < n; ++i) {
    ThreadState* ts = threads_.At(i);
    for (int j = 0; j < kSlotsPerThread; ++j) {
      HoldSlot& s = ts->slots[j];
      if (s.held.load(std::memory_order_acquire) == 1) {
        Entry* e = s.entry.load(std::memory_order_acquire);
        if (e != nullptr) (e->*field).store(mark, std::memory_order_relaxed);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Slow get and the miss path

Entry* Cache::FindCoveringLocked(uint64_t first, uint64_t last,
                                 uint32_t access) {
  IntervalNode* n = tree_.FindCovering(first, last, [&](IntervalNode* node) {
    Entry* e = EntryOfNode(node);
    const std::atomic<uint64_t>* gen =
        e->watch_generation.load(std::memory_order_relaxed);
    return (access & ~e->access.load(std::memory_order_relaxed)) == 0 &&
           gen->load(std::memory_order_acquire) ==
               e->watch_expected.load(std::memory_order_relaxed);
  });
  return n == nullptr ? nullptr : EntryOfNode(n);
}

void Cache::AddAliasLocked(Entry* e, uint64_t first, HashTable** retired) {
  if (first == e->first.load(std::memory_order_relaxed)) return;
  for (int i = 0; i < e->alias_count; ++i)
    if (e->alias_firsts[i] == first) return;
  if (e->alias_count == kMaxAliases) return;
  if (index_.Insert(first, e, e->last.load(std::memory_order_relaxed),
                    e->access.load(std::memory_order_relaxed), retired))
    e->alias_firsts[e->alias_count++] = first;
}

int Cache::GetAnnouncingTable(ThreadState* ts, uint64_t first, uint64_t last,
                              uint32_t access, HoldSlot** out) {
  HashTable* t = index_.table();
  ts->table_hazard.store(t, std::memory_order_relaxed);
  LightFence();
  if (index_.table() != t) return GetSlow(first, last, access, out);
  // Announced: the hit path can read t now. last | page_mask_ == last, so
  // re-entering Get() with [first, last] asks for the same pages.
  return Get(reinterpret_cast<const void*>(first), last - first + 1, access,
             out);
}

int Cache::GetWithBusyHint(ThreadState* ts, uint64_t first, uint64_t last,
                           uint32_t access, HoldSlot** out) {
  HoldSlot* slot = FindFreeSlot(ts);
  if (slot == nullptr || OwnerOf(slot) != ts) {
    // Every slot of the primary state is held: the slow path chains more.
    return GetSlow(first, last, access, out);
  }
  // ts came from this thread's way for the cache (Get() found it there).
  FindTlsRef()->hint = slot;
  return Get(reinterpret_cast<const void*>(first), last - first + 1, access,
             out);
}

int Cache::GetProbing(HoldSlot* slot, uint64_t first, uint64_t last,
                      uint32_t access, HoldSlot** out) {
  // Get() announced this table in the slot's state and checked that it is
  // the current one.
  HashTable* t = OwnerOf(slot)->table_hazard.load(std::memory_order_relaxed);
  const uint64_t key = BucketKey(first);
  for (size_t i = HashFirst(first, t->mask);; i = (i + 1) & t->mask) {
    Entry* raced;
    switch (TryBucket(t->bucket(i), key, last, access, slot, &raced)) {
      case Probe::kHit:
        slot->AddHit();
        *out = slot;
        return 0;
      case Probe::kNext:
        break;
      case Probe::kRaced:
        return BackOffAndGetSlow(slot, raced, first, last, access, out);
      case Probe::kEnd:
        return GetMiss(OwnerOf(slot), slot, first, last, access, out);
    }
  }
}

// The churn lane. realloc's pattern (free a message buffer, allocate it
// again at the same address, register it) makes the churn table serve the
// range uncached for up to kMaxSkip gets between probes. Asking the table
// for each of them costs the mutex, the tree lookup and the admission
// bookkeeping on every get and put, for a decision known in advance. So
// when admission serves a churning range uncached, GrantLaneLocked() hands
// the calling thread the range's remaining gets before its next probe; the
// thread serves them here with no lock: its lane's own entry (only this
// thread takes it, only the put of its handle gives it back), a free slot
// of its own, and the registrar. The probes come when they would have
// come, since the table's count was taken, not copied. What the lane skips
// is what an uncached get does not need: it inserts nothing, so pending
// invalidations can wait for the next slow get, and nothing is evicted for
// it, so it runs only while max_bytes leaves room for it. A range that
// stops churning meanwhile (another thread's probe was hit) is served
// uncached until the lane runs out, at most kMaxSkip gets.
int Cache::GetMiss(ThreadState* ts, HoldSlot* slot, uint64_t first,
                   uint64_t last, uint32_t access, HoldSlot** out) {
  for (ChurnLane& lane : ts->lanes) {
    if (lane.left != 0 && lane.first == first)
      return GetChurnLane(&lane, slot, first, last, access, out);
  }
  return GetSlow(first, last, access, out);
}

int Cache::GetChurnLane(ChurnLane* lane, HoldSlot* slot, uint64_t first,
                        uint64_t last, uint32_t access, HoldSlot** out) {
  Entry* e = lane->entry;
  // Acquire: the last put's deregistration happens before this reuse.
  if (SeqState(e->seq.load(std::memory_order_acquire)) != kFree ||
      (config_.max_bytes != 0 && mode_ != REGCACHE_MODE_ODP &&
       pinned_bytes_now_.load(std::memory_order_relaxed) + (last - first + 1) >
           config_.max_bytes)) {
    // Its entry is held (two gets of the range at once), or the pinned
    // memory is near max_bytes, where a get may have to evict first.
    return GetSlow(first, last, access, out);
  }
  --lane->left;
  ThreadState* ts = OwnerOf(slot);
  ts->lane_gets.store(ts->lane_gets.load(std::memory_order_relaxed) + 1,
                      std::memory_order_relaxed);
  SetState(e, kPrivate);
  slot->entry.store(e, std::memory_order_relaxed);
  slot->flags.store(kSlotPrivate, std::memory_order_relaxed);
  slot->held.store(1, std::memory_order_release);
  return GetUncached(e, slot, first, last, access, Admit::kBypassChurn, out);
}

void Cache::ReturnLaneLocked(ThreadState* ts, uint64_t first) {
  for (ChurnLane& lane : ts->lanes) {
    if (lane.first == first && lane.left != 0) {
      churn_.GiveBackSkip(first, lane.left);
      lane.left = 0;
    }
  }
}

void Cache::GrantLaneLocked(ThreadState* ts, uint64_t first) {
  ChurnLane* lane = nullptr;
  for (ChurnLane& l : ts->lanes) {
    if (l.first == first) lane = &l;
  }
  if (lane == nullptr) {
    lane = &ts->lanes[ts->lane_next];
    ts->lane_next = (ts->lane_next + 1) % kChurnLanes;
    if (lane->left != 0) churn_.GiveBackSkip(lane->first, lane->left);
  }
  if (lane->entry == nullptr) {
    Entry* e = entries_.Allocate();
    if (e == nullptr) return;  // no lane; the slow path serves the range
    e->lane = true;
    lane->entry = e;
  }
  lane->first = first;
  lane->left = churn_.TakeSkip(first);
}

uint64_t Cache::lane_gets() const {
  uint64_t n = 0;
  for (size_t i = 0; i < threads_.used(); ++i)
    n += threads_.At(i)->lane_gets.load(std::memory_order_relaxed);
  return n;
}

int Cache::BackOffAndGetSlow(HoldSlot* slot, Entry* e, uint64_t first,
                             uint64_t last, uint32_t access, HoldSlot** out) {
  slot->held.store(0, std::memory_order_release);
  BackOff(e);
  return GetSlow(first, last, access, out);
}

void Cache::BackOff(Entry* e) {
  // The reader may have been counted as a holder by a concurrent reclaim
  // scan; make sure the zombie is not stranded.
  if (SeqState(e->seq.load(std::memory_order_acquire)) == kZombie)
    ReclaimZombies();
}

// A capacity miss of a cache that only the calling thread uses (most MPI
// ranks) reclaims its victims itself, inline: under mu_, with no other live
// ThreadState, no thread can take a hold (a thread needs a state to reach
// R3, and gets one under mu_), and the hold scan that chose the victims saw
// this thread's own holds; so the victims are unheld and stay unheld, and
// need neither the zombie list, nor W5's fence, nor W6's scan. They are
// deregistered between the two critical sections of the miss and returned
// to the arena in the second (Miss()), so the miss takes mu_ twice and
// reclaim_mu_ not at all. Between the two they are zombies on no list: a
// fork child inherits them as such (cache_fork.cc marks every entry that is
// not free as inherited, so it never deregisters the parent's MRs).
int Cache::GetSlow(uint64_t first, uint64_t last, uint32_t access,
                   HoldSlot** out) {
  Admit admit = Admit::kCache;
  RacedRegistration raced;
  struct DropAtExit {
    Cache* cache;
    RacedRegistration* raced;
    ~DropAtExit() { cache->DropRaced(raced); }
  } drop_at_exit{this, &raced};
  for (int attempt = 0;; ++attempt) {
    const uint32_t gate = gate_.load(std::memory_order_acquire);
    if (gate & kGateDestroying)
      return SetError(-ESHUTDOWN, "regcache_get: the cache is being destroyed");
    if (gate & kGateForked) HandleForkInChild();
    // A monitor with per-range generations (kmod) reports through its ring
    // without the gate: drain it first, so the stale entry is gone before a
    // miss inserts its replacement (a late event would drop the new one).
    if ((gate & kGateEventsPending) || range_generations_) ApplyPendingInline();

    ThreadState* ts = ThreadStateForCaller();
    if (ts == nullptr) return -ENOMEM;
    uint64_t inval_seq;
    HashTable* retired = nullptr;
    bool evicted = false;
    Entry* own_victims = nullptr;
    Entry* uncached = nullptr;
    HoldSlot* uncached_slot = nullptr;
    {
      MutexLock l(&mu_);
      Entry* e =
          caching_disabled_ ? nullptr : FindCoveringLocked(first, last, access);
      if (e != nullptr) {
        HoldSlot* slot = TakeSlotLocked(ts, e);
        if (slot != nullptr) {
          AddAliasLocked(e, first, &retired);
          e->lru_epoch.store(1, std::memory_order_relaxed);
          AdoptRetiredLocked(retired);
          slot->AddHit();
          *out = slot;
          return 0;
        }
      }
      inval_seq = inval_seq_;
      // A retried miss keeps its first decision (only evicting again if
      // needed): the signals counted this get already.
      if (!caching_disabled_ && (attempt == 0 || admit == Admit::kCache)) {
        Entry** own =
            OverLimitsLocked(1, last - first + 1) && !OtherThreadsMayHitLocked()
                ? &own_victims
                : nullptr;
        // A lane that stepped aside gives its gets back first, so that the
        // churn table decides this get as if the lane had never been.
        if (attempt == 0) ReturnLaneLocked(ts, first);
        admit = AdmitLocked(first, last, attempt == 0, own, &evicted);
        if (admit == Admit::kBypassChurn) GrantLaneLocked(ts, first);
      }
      // An uncached get that evicted nothing itself takes mu_ only here:
      // its entry and hold now, its registration outside (GetUncached()).
      if (admit != Admit::kCache && own_victims == nullptr) {
        uncached = entries_.Allocate();
        if (uncached != nullptr) {
          uncached_slot = TakeSlotLocked(ts, uncached, kSlotPrivate);
          if (uncached_slot == nullptr) {
            entries_.Free(uncached);
            uncached = nullptr;
          } else {
            SetState(uncached, kPrivate);
          }
        }
      }
    }
    if (uncached != nullptr) {
      if (evicted) ReclaimZombies();
      return GetUncached(uncached, uncached_slot, first, last, access, admit,
                         out);
    }
    // A full cache evicts before it registers, not after: the pinned memory
    // never exceeds max_bytes by the new range (max_bytes is how a cache
    // stays under RLIMIT_MEMLOCK), and the victim's pages are unpinned
    // before the new ones are pinned. The check after the insertion in
    // Miss() still catches what concurrent misses added meanwhile.
    if (own_victims != nullptr) DeregisterList(own_victims);
    if (evicted) ReclaimZombies();
    const int rc = Miss(first, last, access, ts, inval_seq, admit, own_victims,
                        &raced, out);
    if (rc != kRetryMiss) return rc;
    if (attempt == kMaxMissRetries) {
      return SetError(-EBUSY,
                      "regcache_get: [0x%" PRIx64 ", 0x%" PRIx64
                      "] was invalidated during each of %d registrations",
                      first, last, kMaxMissRetries + 1);
    }
  }
}

int Cache::RegisterWithEviction(uint64_t first, uint64_t last, uint32_t access,
                                regcache_mr* mr, const char* fn) {
  const size_t length = last - first + 1;
  int rc = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    *mr = regcache_mr{};
    mr->addr = reinterpret_cast<void*>(first);
    mr->length = length;
    mr->access = access;
    const uint64_t t0 = NowNs();
    rc = registrar_.reg(registrar_.ctx, mr->addr, length, access, mr);
    registration_ns_.fetch_add(NowNs() - t0, std::memory_order_relaxed);
    if (rc == 0) {
      registrations_.fetch_add(1, std::memory_order_relaxed);
      mr->addr = reinterpret_cast<void*>(first);
      mr->length = length;
      mr->access |= access;  // a registrar may widen, never narrow
      return 0;
    }
    registration_errors_.fetch_add(1, std::memory_order_relaxed);
    if (rc > 0) rc = -rc;
    if ((rc != -ENOMEM && rc != -EAGAIN) || attempt == 1) break;
    // Out of pinnable memory: drop every unused registration, and every
    // block the memory pool keeps free, and retry.
    size_t evicted;
    {
      MutexLock l(&mu_);
      evicted = EvictLocked(/*all_unused=*/true);
    }
    ReclaimZombies();
    evicted += TrimFreeBlocks();
    if (evicted == 0 && zombie_count() == 0) break;
  }
  if (rc == -ENOMEM || rc == -EAGAIN) {
    rlimit rl{};
    getrlimit(RLIMIT_MEMLOCK, &rl);
    char soft[32], hard[32];
    if (rl.rlim_cur == RLIM_INFINITY)
      snprintf(soft, sizeof soft, "unlimited");
    else
      snprintf(soft, sizeof soft, "%llu bytes",
               (unsigned long long)rl.rlim_cur);
    if (rl.rlim_max == RLIM_INFINITY)
      snprintf(hard, sizeof hard, "unlimited");
    else
      snprintf(hard, sizeof hard, "%llu bytes",
               (unsigned long long)rl.rlim_max);
    const uint64_t pinned = pinned_bytes_now_.load();
    const bool memlock =
        rl.rlim_cur != RLIM_INFINITY && pinned + length > rl.rlim_cur;
    return SetError(
        rc,
        "%s: %s registering %zu bytes at 0x%" PRIx64
        " failed (%s) after evicting every unused registration; this cache "
        "pins %" PRIu64 " bytes in %" PRIu64
        " registrations; %s; "
        "RLIMIT_MEMLOCK soft %s, hard %s (see docs/operators.md)",
        fn, registrar_.name ? registrar_.name : "registrar", length, first,
        strerror(-rc), pinned, entries_now_.load(),
        memlock ? "the memlock limit (RLIMIT_MEMLOCK) was hit"
                : "the device or kernel ran out of registration resources",
        soft, hard);
  }
  return SetError(rc,
                  "%s: %s registering %zu bytes at 0x%" PRIx64 " failed: %s",
                  fn, registrar_.name ? registrar_.name : "registrar", length,
                  first, strerror(-rc));
}

Cache::Admit Cache::AdmitLocked(uint64_t first, uint64_t last, bool count,
                                Entry** own_victims, bool* evicted) {
  const uint64_t bytes = last - first + 1;
  Admit admit = Admit::kCache;
  if (adaptive_ && count) {
    sketch_.Increment(first);
    if (churn_.OnMiss(first) == ChurnTable::Decision::kBypass)
      admit = Admit::kBypassChurn;
  }
  // max_bytes bounds pinned memory (it is how a cache stays under
  // RLIMIT_MEMLOCK), uncached registrations included: a registration that
  // would not fit beside the cached entries makes room first, whether it
  // is kept or not. max_entries bounds what is kept, so an uncached get
  // only needs the cache back within it.
  const bool bytes_bind = config_.max_bytes != 0 &&
                          mode_ != REGCACHE_MODE_ODP &&
                          valid_bytes_ + bytes > config_.max_bytes;
  size_t n = 0;
  if (admit != Admit::kCache) {
    if (bytes_bind || OverLimitsLocked())
      n = EvictLocked(/*all_unused=*/false, 0, bytes_bind ? bytes : 0, 0,
                      own_victims);
    *evicted = n != 0 && own_victims == nullptr;
    return admit;
  }
  if (!OverLimitsLocked(1, bytes)) return Admit::kCache;
  const uint64_t mark = MarkHeldLocked();
  if (adaptive_ && !bytes_bind) {
    // Only the entry limit binds: TinyLFU. The newcomer replaces CLOCK's
    // victim only if it was asked for more often; a tie keeps the
    // incumbent, so a cyclic scan larger than the cache keeps part of it
    // cached instead of evicting each range before its next use. The
    // winner is passed by the hand like a referenced entry, so the next
    // newcomer meets another incumbent, and one that keeps winning without
    // a hit loses after kMaxDuelsWithoutHit duels (entry.h).
    n = OverLimitsLocked()
            ? EvictLocked(/*all_unused=*/false, 0, 0, mark, own_victims)
            : 0;
    size_t budget = 2 * valid_entries_ + 1;
    Entry* victim = ClockVictimLocked(mark, &budget);
    if (victim != nullptr && victim->duels_won < kMaxDuelsWithoutHit &&
        sketch_.Estimate(first) <=
            sketch_.Estimate(victim->first.load(std::memory_order_relaxed))) {
      ++victim->duels_won;
      MoveToHeadLocked(victim);
      *evicted = n != 0 && own_victims == nullptr;
      return Admit::kBypassFrequency;
    }
  }
  n += EvictLocked(/*all_unused=*/false, 1, bytes, mark, own_victims);
  *evicted = n != 0 && own_victims == nullptr;
  return Admit::kCache;
}

void Cache::Deregister(Entry* e) {
  if (e->watched)
    monitor_->Unwatch(e->first.load(std::memory_order_relaxed),
                      e->last.load(std::memory_order_relaxed), e->token);
  if (e->inherited) return;
  const int rc = registrar_.dereg(registrar_.ctx, &e->mr);
  deregistrations_.fetch_add(1, std::memory_order_relaxed);
  if (rc != 0) {
    fprintf(stderr, "regcache: %s dereg of %p+%zu failed: %s\n",
            registrar_.name ? registrar_.name : "registrar", e->mr.addr,
            e->mr.length, strerror(rc < 0 ? -rc : rc));
  }
}

void Cache::DeregisterList(Entry* list) {
  for (Entry* e = list; e != nullptr; e = e->zombie_next) Deregister(e);
}

void Cache::FreeListLocked(Entry* list) {
  while (list != nullptr) {
    Entry* e = list;
    list = e->zombie_next;
    entries_now_.fetch_sub(1, std::memory_order_relaxed);
    pinned_bytes_now_.fetch_sub(e->mr.length, std::memory_order_relaxed);
    e->watched = false;
    e->inherited = false;
    e->pool = false;
    SetState(e, kFree);
    entries_.Free(e);
  }
}

void Cache::DropRaced(RacedRegistration* raced) {
  if (!raced->live) return;
  raced->live = false;
  registrar_.dereg(registrar_.ctx, &raced->mr);
  deregistrations_.fetch_add(1, std::memory_order_relaxed);
}

int Cache::GetUncached(Entry* e, HoldSlot* slot, uint64_t first, uint64_t last,
                       uint32_t access, Admit admit, HoldSlot** out) {
  misses_.fetch_add(1, std::memory_order_relaxed);
  regcache_mr mr;
  const int rc = RegisterWithEviction(first, last, access, &mr);
  if (rc != 0) {
    slot->held.store(0, std::memory_order_release);
    slot->flags.store(0, std::memory_order_relaxed);
    FreePrivate(e);
    return rc;
  }
  // Only this get's handle reaches a kPrivate entry, and its put reads
  // these fields in this thread after the get returns.
  e->first.store(first, std::memory_order_relaxed);
  e->last.store(last, std::memory_order_relaxed);
  e->access.store(mr.access, std::memory_order_relaxed);
  e->mr = mr;
  entries_now_.fetch_add(1, std::memory_order_relaxed);
  pinned_bytes_now_.fetch_add(mr.length, std::memory_order_relaxed);
  if (admit == Admit::kBypassChurn)
    uncached_churn_.fetch_add(1, std::memory_order_relaxed);
  else
    uncached_admission_.fetch_add(1, std::memory_order_relaxed);
  *out = slot;
  return 0;
}

void Cache::FillEntryLocked(Entry* e, uint64_t first, uint64_t last,
                            const regcache_mr& mr, const WatchToken& token,
                            bool watched) {
  e->first.store(first, std::memory_order_relaxed);
  e->last.store(last, std::memory_order_relaxed);
  e->access.store(mr.access, std::memory_order_relaxed);
  e->watch_generation.store(token.generation, std::memory_order_relaxed);
  e->watch_expected.store(token.expected, std::memory_order_relaxed);
  // Unreferenced: its place at the head already protects a new entry.
  e->lru_epoch.store(0, std::memory_order_relaxed);
  e->mr = mr;
  e->token = token;
  e->watched = watched;
  e->inherited = false;
  e->hit_seen = false;
  e->duels_won = 0;
  e->alias_count = 0;
  e->node.first = first;
  e->node.last = last;
  entries_now_.fetch_add(1, std::memory_order_relaxed);
  pinned_bytes_now_.fetch_add(mr.length, std::memory_order_relaxed);
}

int Cache::Miss(uint64_t first, uint64_t last, uint32_t access, ThreadState* ts,
                uint64_t inval_seq_at_start, Admit admit, Entry* own_victims,
                RacedRegistration* raced_before, HoldSlot** out) {
  misses_.fetch_add(1, std::memory_order_relaxed);
  // Watch BEFORE registering: an unmap between the two is then seen either
  // through the token's generation or through InvalidatedSinceLocked().
  WatchToken token;
  bool cacheable = !caching_disabled_ && admit == Admit::kCache;
  bool unwatchable = false;
  if (cacheable) {
    int rc = monitor_->Watch(first, last, &token);
    if (rc == -EOPNOTSUPP) {
      cacheable = false;
      unwatchable = true;
    } else if (rc != 0) {
      if (own_victims != nullptr) {
        MutexLock l(&mu_);
        FreeListLocked(own_victims);
      }
      return SetError(rc,
                      "regcache_get: monitor %s cannot watch [0x%" PRIx64
                      ", 0x%" PRIx64 "]: %s",
                      regcache_monitor_name(monitor_kind_), first, last,
                      strerror(-rc));
    }
  }
  if (!cacheable) {
    token = WatchToken{};
    token.generation = StaticGeneration();
    token.expected = token.generation->load();
  }

  regcache_mr mr;
  int rc = RegisterWithEviction(first, last, access, &mr);
  if (raced_before->live) {
    // Now that this attempt holds its own registration (and so whatever
    // its registrar did to the VMA), the previous one can go; an
    // invalidation its deregistration causes is seen below like any other.
    // If pinning failed for want of memory, the raced registration may be
    // what was missing: drop it and try once more.
    DropRaced(raced_before);
    if (rc == -ENOMEM || rc == -EAGAIN)
      rc = RegisterWithEviction(first, last, access, &mr);
  }
  if (rc != 0) {
    if (cacheable) monitor_->Unwatch(first, last, token);
    if (own_victims != nullptr) {
      MutexLock l(&mu_);
      FreeListLocked(own_victims);
    }
    return rc;
  }

  HashTable* retired = nullptr;
  HoldSlot* slot = nullptr;
  bool raced = false;
  bool evicted = false;
  size_t table_capacity = 0;  // for the message when the table is full
  Entry* e;
  {
    MutexLock l(&mu_);
    FreeListLocked(own_victims);
    raced =
        cacheable &&
        (InvalidatedSinceLocked(inval_seq_at_start, first, last) ||
         token.generation->load(std::memory_order_acquire) != token.expected);
    // A raced registration gets no entry: GetSlow() keeps it until its
    // retry has registered again (RacedRegistration).
    e = raced ? nullptr : entries_.Allocate();
    if (e == nullptr && !raced) table_capacity = entries_.capacity();
    if (e != nullptr) {
      FillEntryLocked(e, first, last, mr, token, cacheable);
      if (!cacheable) {
        // Served once: held by this get's handle only, released by its put.
        SetState(e, kPrivate);
      } else {
        tree_.Insert(&e->node);
        index_.Insert(first, e, last, mr.access, &retired);
        e->lru_prev = nullptr;
        e->lru_next = lru_head_;
        if (lru_head_ != nullptr) lru_head_->lru_prev = e;
        lru_head_ = e;
        if (lru_tail_ == nullptr) lru_tail_ = e;
        ++valid_entries_;
        valid_bytes_ += mr.length;
        SetState(e, kValid);
      }
      slot = TakeSlotLocked(ts, e, cacheable ? 0 : kSlotPrivate);
      if (cacheable && OverLimitsLocked())
        evicted = EvictLocked(/*all_unused=*/false) != 0;
    }
    AdoptRetiredLocked(retired);
  }
  if (raced) {
    monitor_->Unwatch(first, last, token);
    raced_before->mr = mr;
    raced_before->live = true;
    return kRetryMiss;
  }
  if (e == nullptr) {
    registrar_.dereg(registrar_.ctx, &mr);
    deregistrations_.fetch_add(1, std::memory_order_relaxed);
    if (cacheable) monitor_->Unwatch(first, last, token);
    return SetError(-ENOMEM,
                    "regcache_get: the cache's entry table is full "
                    "(%zu entries)",
                    table_capacity);
  }
  if (retired != nullptr) FreeRetiredTables();
  if (unwatchable || caching_disabled_)
    uncacheable_.fetch_add(1, std::memory_order_relaxed);
  else if (admit == Admit::kBypassChurn)
    uncached_churn_.fetch_add(1, std::memory_order_relaxed);
  else if (admit == Admit::kBypassFrequency)
    uncached_admission_.fetch_add(1, std::memory_order_relaxed);
  if (evicted) ReclaimZombies();
  if (slot == nullptr) {
    // Could not allocate a hold slot: release the entry as an orphan.
    if (!cacheable) {
      (void)ReleasePrivate(e);
    } else {
      {
        MutexLock l(&mu_);
        if (SeqState(e->seq.load()) == kValid) KillLocked(e);
      }
      ReclaimZombies();
    }
    return SetError(-ENOMEM, "regcache_get: out of hold slots");
  }
  *out = slot;
  return 0;
}

// ---------------------------------------------------------------------------
// Invalidation and eviction

void Cache::KillLocked(Entry* e, Entry** own_list) {
  tree_.Erase(&e->node);
  index_.Remove(e->first.load(std::memory_order_relaxed), e);
  for (int i = 0; i < e->alias_count; ++i) index_.Remove(e->alias_firsts[i], e);
  e->alias_count = 0;
  if (e->pool) {
    --pool_entries_;  // never on lru_
  } else {
    if (e->lru_prev != nullptr)
      e->lru_prev->lru_next = e->lru_next;
    else
      lru_head_ = e->lru_next;
    if (e->lru_next != nullptr)
      e->lru_next->lru_prev = e->lru_prev;
    else
      lru_tail_ = e->lru_prev;
    e->lru_prev = e->lru_next = nullptr;
  }
  --valid_entries_;
  valid_bytes_ -= e->mr.length;
  SetState(e, kZombie);
  if (own_list != nullptr) {
    // Nobody holds it or can (GetSlow()): no put will look at it.
    e->zombie_next = *own_list;
    *own_list = e;
    return;
  }
  e->zombie_next = zombies_;
  zombies_ = e;
  ++zombie_count_;
  zombies_now_.fetch_add(1, std::memory_order_release);
}

void Cache::RecordInvalidationLocked(uint64_t first, uint64_t last) {
  const int i = int(inval_seq_ % kRecentInvalidations);
  recent_first_[i] = first;
  recent_last_[i] = last;
  ++inval_seq_;
}

bool Cache::InvalidatedSinceLocked(uint64_t seq, uint64_t first,
                                   uint64_t last) {
  if (inval_seq_ - seq > uint64_t(kRecentInvalidations)) return true;
  for (uint64_t s = seq; s != inval_seq_; ++s) {
    const int i = int(s % kRecentInvalidations);
    if (recent_first_[i] <= last && first <= recent_last_[i]) return true;
  }
  return false;
}

void Cache::InvalidateRange(uint64_t first, uint64_t last,
                            regcache_inval_reason reason) {
  size_t killed = 0;
  {
    MutexLock l(&mu_);
    RecordInvalidationLocked(first, last);
    // Collect first (the tree must not change under ForEachOverlap).
    Entry* victims = nullptr;
    tree_.ForEachOverlap(first, last, [&](IntervalNode* n) {
      Entry* e = EntryOfNode(n);
      e->zombie_next = victims;  // scratch link until KillLocked
      victims = e;
      return true;
    });
    while (victims != nullptr) {
      Entry* e = victims;
      victims = e->zombie_next;
      if (adaptive_ && !e->pool)
        churn_.OnInvalidated(e->first.load(std::memory_order_relaxed),
                             EverHitLocked(e));
      KillLocked(e);
      ++killed;
    }
  }
  if (killed != 0) {
    invalidations_[reason].fetch_add(killed, std::memory_order_relaxed);
    if (t_applying_for == this)
      t_applied_kills = true;
    else
      WakeReaper();
  }
}

void Cache::ApplyPendingInline() {
  // An invalidation this thread applies itself (kmod's WaitForPending()
  // drains the ring in the caller) is reclaimed by this thread too, right
  // away: the zombie's deregistration then costs what the program's own
  // ibv_dereg_mr() would, without waking the reaper (a thread switch)
  // and, in a single-threaded program, without a membarrier() (only the
  // reaper, which owns no hold slots, needs one there).
  if (!monitor_->HasPending()) return;
  t_applying_for = this;
  t_applied_kills = false;
  monitor_->WaitForPending();
  t_applying_for = nullptr;
  if (t_applied_kills) {
    t_applied_kills = false;
    ReclaimZombies();
  }
}

// max_bytes bounds pinned memory; ODP MRs pin nothing, so in ODP mode only
// max_entries evicts.
bool Cache::OverLimitsLocked(size_t extra_entries, uint64_t extra_bytes) const {
  return (config_.max_entries != 0 &&
          valid_entries_ + extra_entries > config_.max_entries) ||
         (config_.max_bytes != 0 && mode_ != REGCACHE_MODE_ODP &&
          valid_bytes_ + extra_bytes > config_.max_bytes);
}

// An entry's CLOCK reference bit is the kTagReferenced bit of each of its
// buckets (set by lock-free hits) or lru_epoch (set by slow-path hits).
bool Cache::TestAndClearReferencedLocked(Entry* e) {
  bool referenced = e->lru_epoch.exchange(0, std::memory_order_relaxed) != 0;
  auto test = [&](uint64_t first) {
    if (Bucket* b = index_.Find(first, e))
      referenced |= (b->tag.fetch_and(~kTagReferenced) & kTagReferenced) != 0;
  };
  test(e->first.load(std::memory_order_relaxed));
  for (int i = 0; i < e->alias_count; ++i) test(e->alias_firsts[i]);
  if (referenced) {
    e->hit_seen = true;
    e->duels_won = 0;
  }
  return referenced;
}

bool Cache::EverHitLocked(Entry* e) {
  if (e->hit_seen || e->lru_epoch.load(std::memory_order_relaxed) != 0)
    return true;
  auto test = [&](uint64_t first) {
    const Bucket* b = index_.Find(first, e);
    return b != nullptr &&
           (b->tag.load(std::memory_order_relaxed) & kTagReferenced) != 0;
  };
  if (test(e->first.load(std::memory_order_relaxed))) return true;
  for (int i = 0; i < e->alias_count; ++i)
    if (test(e->alias_firsts[i])) return true;
  return false;
}

uint64_t Cache::MarkHeldLocked() {
  const uint64_t mark = mark_counter_.fetch_add(1) + 1;
  ScanHolds(mark, &Entry::evict_mark);
  return mark;
}

void Cache::MoveToHeadLocked(Entry* e) {
  if (e == lru_head_) return;
  Entry* prev = e->lru_prev;
  if (prev != nullptr) prev->lru_next = e->lru_next;
  if (e->lru_next != nullptr)
    e->lru_next->lru_prev = prev;
  else
    lru_tail_ = prev;
  e->lru_prev = nullptr;
  e->lru_next = lru_head_;
  lru_head_->lru_prev = e;
  lru_head_ = e;
}

// CLOCK over lru_: hits set an entry's reference bit; the hand at the tail
// gives a referenced entry a second chance (clears the bit, moves it to the
// head) and stops at an unreferenced one. Entries seen held by an advisory
// hold scan are skipped too: evicting them would only make their next get
// a miss.
Entry* Cache::ClockVictimLocked(uint64_t hold_mark, size_t* budget) {
  while (lru_tail_ != nullptr && *budget > 0) {
    --*budget;
    Entry* e = lru_tail_;
    const bool held =
        e->evict_mark.load(std::memory_order_relaxed) == hold_mark;
    const bool referenced = TestAndClearReferencedLocked(e);
    if (!held && !referenced) return e;
    // A hit since the hand last passed: one more request for the sketch.
    if (referenced && adaptive_)
      sketch_.Increment(e->first.load(std::memory_order_relaxed));
    MoveToHeadLocked(e);
  }
  return nullptr;
}

size_t Cache::EvictLocked(bool all_unused, size_t extra_entries,
                          uint64_t extra_bytes, uint64_t hold_mark,
                          Entry** own_list) {
  const uint64_t mark = hold_mark != 0 ? hold_mark : MarkHeldLocked();
  size_t evicted = 0;
  if (all_unused) {
    // Out of pinnable memory: every entry nobody holds goes, referenced
    // or not.
    Entry* e = lru_tail_;
    while (e != nullptr) {
      Entry* prev = e->lru_prev;
      if (e->evict_mark.load(std::memory_order_relaxed) != mark) {
        KillLocked(e);
        ++evicted;
      }
      e = prev;
    }
  } else {
    size_t budget = 2 * valid_entries_ + 1;
    while (OverLimitsLocked(extra_entries, extra_bytes)) {
      Entry* victim = ClockVictimLocked(mark, &budget);
      if (victim == nullptr) break;
      KillLocked(victim, own_list);
      ++evicted;
    }
  }
  evictions_.fetch_add(evicted, std::memory_order_relaxed);
  return evicted;
}

int Cache::Invalidate(const void* addr, size_t length) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr);
  if (length == 0 || a + (length - 1) < a) {
    return SetError(-EINVAL, "regcache_invalidate: bad range %p + %zu", addr,
                    length);
  }
  InvalidateRange(a & ~page_mask_, (a + (length - 1)) | page_mask_,
                  REGCACHE_INVAL_EXPLICIT);
  ReclaimZombies();
  return 0;
}

int Cache::Flush() {
  size_t n = 0;
  {
    MutexLock l(&mu_);
    RecordInvalidationLocked(0, UINT64_MAX);
    while (lru_tail_ != nullptr) {
      KillLocked(lru_tail_);
      ++n;
    }
  }
  invalidations_[REGCACHE_INVAL_FLUSH].fetch_add(n, std::memory_order_relaxed);
  ReclaimZombies();
  return 0;
}

// ---------------------------------------------------------------------------
// Reclamation

void Cache::AdoptRetiredLocked(HashTable* list) {
  if (list == nullptr) return;
  HashTable* tail = list;
  while (tail->retired_next != nullptr) tail = tail->retired_next;
  tail->retired_next = retired_tables_;
  retired_tables_ = list;
}

size_t Cache::zombie_count() {
  MutexLock l(&mu_);
  return zombie_count_;
}

void Cache::ReclaimZombies() {
  ForgetParentIfForked();  // the parent's zombies are not ours to dereg
  MutexLock reclaim(&reclaim_mu_);
  Entry* batch;
  bool other_threads;
  {
    MutexLock l(&mu_);
    batch = zombies_;
    zombies_ = nullptr;
    zombie_count_ = 0;
    other_threads = OtherThreadsMayHitLocked();
  }
  if (batch == nullptr) return;
  // W5 (cache_hit.h).
  FenceAgainstHitPaths(other_threads);
  const uint64_t mark = mark_counter_.fetch_add(1) + 1;
  ScanHolds(mark, &Entry::held_mark);
  Entry* keep = nullptr;
  Entry* drop = nullptr;
  size_t kept = 0;
  while (batch != nullptr) {
    Entry* e = batch;
    batch = e->zombie_next;
    if (e->held_mark.load(std::memory_order_relaxed) == mark) {
      e->zombie_next = keep;
      keep = e;
      ++kept;
    } else {
      e->zombie_next = drop;
      drop = e;
    }
  }
  if (keep != nullptr) {
    MutexLock l(&mu_);
    Entry* tail = keep;
    while (tail->zombie_next != nullptr) tail = tail->zombie_next;
    tail->zombie_next = zombies_;
    zombies_ = keep;
    zombie_count_ += kept;
  }
  if (drop == nullptr) return;
  // No lock but reclaim_mu_ here: dereg may free and munmap.
  DeregisterList(drop);
  MutexLock l(&mu_);
  while (drop != nullptr) {
    Entry* e = drop;
    drop = e->zombie_next;
    entries_now_.fetch_sub(1, std::memory_order_relaxed);
    pinned_bytes_now_.fetch_sub(e->mr.length, std::memory_order_relaxed);
    e->watched = false;
    e->inherited = false;
    e->pool = false;
    SetState(e, kFree);
    zombies_now_.fetch_sub(1, std::memory_order_release);
    entries_.Free(e);
  }
}

// A thread can only reach the hit path's R3 with a live ThreadState, and it
// gets one under mu_. So when, under mu_, every live state is the caller's,
// any other thread that registers later does so after this critical
// section, hence after W1 removed every bucket of the batch (and after
// the batch's tables were replaced): it cannot hold a zombie of the batch
// or announce a retired table. A thread that exited stored live = 0 after
// its last hold (release), so its holds are visible to the scan. Then no
// other CPU needs a barrier and a single-threaded process (an MPI rank,
// say) pays no membarrier() per reclaim. Any doubt (an owner key being
// rewritten, a state of another thread) means HeavyFence().
bool Cache::OtherThreadsMayHitLocked() const {
  const void* me = ThisThreadKey();
  for (size_t i = 0; i < threads_.used(); ++i) {
    const ThreadState* ts = threads_.At(i);
    if (ts->live.load(std::memory_order_acquire) != 0 &&
        ts->slots[0].owner_key.load(std::memory_order_relaxed) != me) {
      return true;
    }
  }
  return false;
}

void Cache::FenceAgainstHitPaths(bool other_threads) {
  if (other_threads) {
    HeavyFence();
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

void Cache::FreeRetiredTables() {
  HashTable* candidates;
  bool other_threads;
  {
    MutexLock l(&mu_);
    candidates = retired_tables_;
    retired_tables_ = nullptr;
    other_threads = OtherThreadsMayHitLocked();
  }
  if (candidates == nullptr) return;
  FenceAgainstHitPaths(other_threads);
  HashTable* keep = nullptr;
  while (candidates != nullptr) {
    HashTable* t = candidates;
    candidates = t->retired_next;
    bool in_use = false;
    for (size_t i = 0; i < threads_.used() && !in_use; ++i) {
      in_use =
          threads_.At(i)->table_hazard.load(std::memory_order_acquire) == t;
    }
    if (in_use) {
      t->retired_next = keep;
      keep = t;
    } else {
      HashTable::Destroy(t);
    }
  }
  if (keep != nullptr) {
    MutexLock l(&mu_);
    HashTable* tail = keep;
    while (tail->retired_next != nullptr) tail = tail->retired_next;
    tail->retired_next = retired_tables_;
    retired_tables_ = keep;
  }
}

// ---------------------------------------------------------------------------
// The reaper

int Cache::StartReaper(std::string* why) {
  if (monitor_kind_ == REGCACHE_MONITOR_NONE) return 0;  // nothing async
  {
    std::lock_guard<std::mutex> l(reaper_mu_);
    reaper_stop_ = false;
    reaper_wake_ = false;
  }
  return StartEventThread(
      "regcache-reap", [this] { ReaperLoop(); }, &reaper_, why);
}

void Cache::StopReaper() {
  if (!reaper_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_one();
  reaper_.join();
}

void Cache::WakeReaper() {
  if (!reaper_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(reaper_mu_);
    reaper_wake_ = true;
  }
  reaper_cv_.notify_one();
}

void Cache::ReaperLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(reaper_mu_);
      reaper_cv_.wait(l, [this] { return reaper_wake_ || reaper_stop_; });
      if (reaper_stop_) return;
      reaper_wake_ = false;
    }
    ReclaimZombies();
  }
}

// ---------------------------------------------------------------------------
// Statistics and checks

void Cache::Stats(struct regcache_stats* out) {
  if (range_generations_) monitor_->WaitForPending();  // counters up to date
  *out = {};
  uint64_t hits = 0;
  for (size_t i = 0; i < threads_.used(); ++i) {
    for (const HoldSlot& slot : threads_.At(i)->slots)
      hits += slot.hits.load(std::memory_order_relaxed);
  }
  out->hits = hits;
  out->misses = misses_.load();
  out->registrations = registrations_.load();
  out->deregistrations = deregistrations_.load();
  out->registration_errors = registration_errors_.load();
  out->evictions = evictions_.load();
  for (int r = 0; r < REGCACHE_INVAL_NREASONS; ++r)
    out->invalidations[r] = invalidations_[r].load();
  out->uncacheable = uncacheable_.load();
  out->uncached_churn = uncached_churn_.load();
  out->uncached_admission = uncached_admission_.load();
  out->registration_ns = registration_ns_.load();
  out->entries_now = entries_now_.load();
  out->pinned_bytes_now = pinned_bytes_now_.load();
  uint64_t in_use = 0;
  for (size_t i = 0; i < threads_.used(); ++i) {
    for (int j = 0; j < kSlotsPerThread; ++j)
      in_use += threads_.At(i)->slots[j].held.load(std::memory_order_relaxed);
  }
  out->in_use_now = in_use;
  out->mem_allocs = mem_allocs_.load();
  out->mem_reuses = mem_reuses_.load();
  out->mem_pages_allocs = mem_kind_allocs_[int(PoolKind::kPages)].load();
  out->mem_pages_bytes = mem_kind_bytes_[int(PoolKind::kPages)].load();
  out->mem_hugetlb_allocs = mem_kind_allocs_[int(PoolKind::kHugetlb)].load();
  out->mem_hugetlb_bytes = mem_kind_bytes_[int(PoolKind::kHugetlb)].load();
  out->mem_thp_allocs = mem_kind_allocs_[int(PoolKind::kThp)].load();
  out->mem_thp_bytes = mem_kind_bytes_[int(PoolKind::kThp)].load();
  out->mem_contig_allocs = mem_kind_allocs_[int(PoolKind::kContig)].load();
  out->mem_contig_bytes = mem_kind_bytes_[int(PoolKind::kContig)].load();
  out->mem_bytes_now = mem_bytes_now_.load();
  out->mem_free_bytes_now = mem_free_bytes_now_.load();
  out->monitor = monitor_kind_;
  out->mode = mode_;  // ODP mode policy
  snprintf(out->mode_reason, sizeof out->mode_reason, "%s",
           mode_reason_.c_str());
  snprintf(out->monitor_reason, sizeof out->monitor_reason, "%s",
           monitor_note_.c_str());
}

bool Cache::CheckInvariants(std::string* why) {
  MutexLock l(&mu_);
  if (!tree_.CheckInvariants(why)) return false;
  size_t n = 0, bytes = 0;
  for (Entry* e = lru_head_; e != nullptr; e = e->lru_next) {
    if (SeqState(e->seq.load()) != kValid) {
      *why = "a non-valid entry is on the LRU list";
      return false;
    }
    if (e->duels_won > kMaxDuelsWithoutHit) {
      *why = "an entry won more admission duels than kMaxDuelsWithoutHit";
      return false;
    }
    ++n;
    bytes += e->mr.length;
  }
  size_t pool_n = 0;
  bool pool_ok = true;
  const Entry* lru_head = lru_head_;
  tree_.ForEachOverlap(0, UINT64_MAX, [&](IntervalNode* node) {
    Entry* e = EntryOfNode(node);
    if (e->pool) {
      ++pool_n;
      bytes += e->mr.length;
      pool_ok &=
          e->lru_prev == nullptr && e->lru_next == nullptr && e != lru_head;
    }
    return true;
  });
  if (!pool_ok) {
    *why = "a pool entry is on the LRU list";
    return false;
  }
  if (pool_n != pool_entries_ || n + pool_n != valid_entries_ ||
      n + pool_n != tree_.size() || bytes != valid_bytes_) {
    *why =
        "valid_entries_/valid_bytes_/pool_entries_ disagree with the LRU "
        "list or tree";
    return false;
  }
  size_t z = 0;
  for (Entry* e = zombies_; e != nullptr; e = e->zombie_next) {
    if (SeqState(e->seq.load()) != kZombie) {
      *why = "a non-zombie entry is on the zombie list";
      return false;
    }
    ++z;
  }
  if (z != zombie_count_) {
    *why = "zombie_count_ disagrees with the zombie list";
    return false;
  }
  size_t private_holds = 0;
  for (size_t i = 0; i < threads_.used(); ++i) {
    const ThreadState* ts = threads_.At(i);
    for (int j = 0; j < kSlotsPerThread; ++j) {
      const HoldSlot& slot = ts->slots[j];
      if (slot.held.load() != 1) continue;
      const uint64_t state = SeqState(slot.entry.load()->seq.load());
      if (state == kFree) {
        *why = "a held slot points at a free entry";
        return false;
      }
      if (state == kPrivate && !slot.entry.load()->inherited) ++private_holds;
    }
  }
  // A fork child keeps its parent's private entries allocated for good.
  size_t privates = 0;
  for (size_t i = 0; i < entries_.used(); ++i) {
    const Entry* e = entries_.At(i);
    privates += SeqState(e->seq.load()) == kPrivate && !e->inherited;
  }
  if (privates != private_holds) {
    *why = "an uncached get's entry is not held by exactly one handle";
    return false;
  }
  // Every lane entry is one lane's, and only kFree or kPrivate.
  size_t lane_entries = 0, lanes_with_entry = 0;
  for (size_t i = 0; i < entries_.used(); ++i) {
    const Entry* e = entries_.At(i);
    if (!e->lane) continue;
    ++lane_entries;
    const uint64_t state = SeqState(e->seq.load());
    if (state != kFree && state != kPrivate) {
      *why = "a lane entry is neither free nor private";
      return false;
    }
  }
  for (size_t i = 0; i < threads_.used(); ++i) {
    for (const ChurnLane& lane : threads_.At(i)->lanes) {
      if (lane.entry != nullptr) {
        ++lanes_with_entry;
        if (!lane.entry->lane) {
          *why = "a churn lane's entry is not marked as one";
          return false;
        }
      } else if (lane.left != 0) {
        *why = "a churn lane has gets left but no entry";
        return false;
      }
    }
  }
  if (lane_entries != lanes_with_entry) {
    *why = "a lane entry belongs to no lane, or to two";
    return false;
  }
  return true;
}

}  // namespace regcache_internal
