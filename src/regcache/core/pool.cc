// SPDX-License-Identifier: BSD-2-Clause
// Pin-once memory: the cache's memory pool (regcache_mem_alloc,
// regcache_mem_free, regcache_mem_trim).
//
// A block is mapped (pool_map.cc), watched by the monitor and registered
// once, with REGCACHE_ACCESS_LOCAL_WRITE | _REMOTE_WRITE | _REMOTE_READ,
// and its registration is published as a *pool entry*: an ordinary valid
// entry in tree_ and index_, so every get inside the block hits (the
// lock-free path at its first page, the slow path elsewhere), but never on
// lru_, so CLOCK eviction and regcache_flush() never see it. A pool entry
// leaves the cache only by invalidation (the monitor saw the memory
// unmapped behind the pool's back, regcache_invalidate(), a fork child
// dropping everything), by the pool releasing its block, or at destroy.
//
// A freed block stays mapped and registered on pool_free_ for the next
// allocation of its kind that fits (best fit, at most twice the request).
// Whether a block's registration is still the pool's is one comparison of
// its entry's seq under mu_ (BlockIsOursLocked): a block whose entry was
// invalidated is "lost" and the pool never unmaps it, because the address
// may belong to another mapping by then.
//
// Limits: in pin mode the pool's bytes and blocks (allocated, free and
// being allocated, pool_bytes_/pool_count_) must fit max_bytes and
// max_entries; they are part of the cache's valid_bytes_/valid_entries_ as
// well, so a pool that grows makes CLOCK evict ordinary entries.
//
// Locks: pool_mu_ guards the books and is taken before mu_. Mapping,
// registering, deregistering and unmapping happen with no lock held.
#include <sys/mman.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/errors.h"
#include "core/cache.h"

namespace regcache_internal {
namespace {

constexpr uint32_t kPoolAccess = REGCACHE_ACCESS_LOCAL_WRITE |
                                 REGCACHE_ACCESS_REMOTE_WRITE |
                                 REGCACHE_ACCESS_REMOTE_READ;
constexpr int kMaxPoolRegisterAttempts = 8;
// Requests beyond this are refused before any rounding can overflow.
constexpr size_t kMaxLength = size_t{1} << 46;

size_t RoundUp(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

// The unit a request of `flags` is rounded to, at most: the pool reserves
// room for the largest mapping the request can get before it maps.
size_t RoundingUnit(uint32_t flags, size_t page) {
  if (flags & (REGCACHE_MEM_HUGE | REGCACHE_MEM_HUGE_ONLY)) {
    const size_t huge = HugetlbPageSize();
    const size_t thp = ThpPageSize();
    return huge > thp ? huge : thp;
  }
  return page;
}

bool KindServes(PoolKind kind, uint32_t flags) {
  if (flags & REGCACHE_MEM_CONTIG) return kind == PoolKind::kContig;
  if (flags & REGCACHE_MEM_HUGE_ONLY) return kind == PoolKind::kHugetlb;
  if (flags & REGCACHE_MEM_HUGE)
    return kind == PoolKind::kHugetlb || kind == PoolKind::kThp;
  return kind == PoolKind::kPages;
}

}  // namespace

int Cache::PoolPrologue(const char* fn) {
  const uint32_t gate = gate_.load(std::memory_order_acquire);
  if (gate & kGateDestroying)
    return SetError(-ESHUTDOWN, "%s: the cache is being destroyed", fn);
  if (gate & kGateForked) HandleForkInChild();
  // Apply what the monitor has seen, so a block unmapped behind the pool's
  // back is known to be lost before the pool hands it out or unmaps it.
  if ((gate & kGateEventsPending) || range_generations_)
    monitor_->WaitForPending();
  return 0;
}

bool Cache::BlockIsOursLocked(const PoolBlock* b) const {
  return b->entry != nullptr &&
         b->entry->seq.load(std::memory_order_relaxed) == b->entry_seq;
}

void Cache::RemoveFreeLocked(PoolBlock* b) {
  auto range = pool_free_.equal_range(b->length);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == b) {
      pool_free_.erase(it);
      mem_free_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
      return;
    }
  }
}

PoolBlock* Cache::TakeFreeBlock(size_t length, uint32_t flags) {
  const size_t page = page_mask_ + 1;
  const size_t at_most = 2 * RoundUp(length, RoundingUnit(flags, page));
  std::vector<PoolBlock*> lost;
  PoolBlock* found = nullptr;
  {
    MutexLock p(&pool_mu_);
    auto it = pool_free_.lower_bound(length);
    while (it != pool_free_.end() && it->first <= at_most && found == nullptr) {
      PoolBlock* b = it->second;
      if (!KindServes(b->kind, flags)) {
        ++it;
        continue;
      }
      bool ours;
      {
        MutexLock l(&mu_);
        ours = BlockIsOursLocked(b);
      }
      it = pool_free_.erase(it);
      mem_free_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
      if (ours) {
        b->allocated = true;
        found = b;
      } else {
        // Unmapped behind the pool's back while free: forget it.
        pool_blocks_.erase(b->base);
        pool_bytes_ -= b->length;
        --pool_count_;
        mem_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
        lost.push_back(b);
      }
    }
  }
  for (PoolBlock* b : lost) delete b;
  return found;
}

bool Cache::PoolFitsLocked(size_t length) const {
  const bool bytes_ok = config_.max_bytes == 0 || mode_ == REGCACHE_MODE_ODP ||
                        (pool_bytes_ <= config_.max_bytes &&
                         length <= config_.max_bytes - pool_bytes_);
  const bool count_ok =
      config_.max_entries == 0 || pool_count_ + 1 <= config_.max_entries;
  return bytes_ok && count_ok;
}

int Cache::ReservePoolRoom(size_t length) {
  for (;;) {
    std::vector<PoolBlock*> release;
    {
      MutexLock p(&pool_mu_);
      if (PoolFitsLocked(length)) {
        pool_bytes_ += length;
        ++pool_count_;
        return 0;
      }
      // Free blocks yield to an allocation, the largest first.
      auto it = pool_free_.end();
      while (it != pool_free_.begin() && !PoolFitsLocked(length)) {
        --it;
        PoolBlock* b = it->second;
        it = pool_free_.erase(it);
        mem_free_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
        pool_blocks_.erase(b->base);
        pool_bytes_ -= b->length;
        --pool_count_;
        mem_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
        release.push_back(b);
      }
      if (release.empty()) {
        const bool bytes = !(config_.max_entries != 0 &&
                             pool_count_ + 1 > config_.max_entries);
        return SetError(
            -ENOMEM,
            "regcache_mem_alloc: %zu more bytes would take the pool past the "
            "cache's %s (%zu); the pool holds %zu bytes in %zu allocations; "
            "free some, or raise %s (docs/pinonce.md)",
            length, bytes ? "max_bytes" : "max_entries",
            bytes ? config_.max_bytes : config_.max_entries, pool_bytes_,
            pool_count_, bytes ? "REGCACHE_MAX_BYTES" : "REGCACHE_MAX_ENTRIES");
      }
    }
    ReleaseBlocks(release);
  }
}

void Cache::UnreservePoolRoom(size_t length) {
  MutexLock p(&pool_mu_);
  pool_bytes_ -= length;
  --pool_count_;
}

int Cache::RegisterPoolBlock(const PoolMapping& m, PoolBlock* block) {
  const uint64_t first = m.base;
  const uint64_t last = m.base + (m.length - 1);
  // A registration whose watch went stale while it was made is kept until
  // the next attempt has registered again, as GetSlow() does (cache.h,
  // RacedRegistration).
  RacedRegistration raced_before;
  struct DropAtExit {
    Cache* cache;
    RacedRegistration* raced;
    ~DropAtExit() { cache->DropRaced(raced); }
  } drop_at_exit{this, &raced_before};
  for (int attempt = 0; attempt < kMaxPoolRegisterAttempts; ++attempt) {
    uint64_t inval_seq;
    bool evicted = false;
    {
      MutexLock l(&mu_);
      inval_seq = inval_seq_;
      // The new block counts against the limits like a cached entry: make
      // room among the unused ones first (never among the pool's).
      if (OverLimitsLocked(1, m.length))
        evicted = EvictLocked(/*all_unused=*/false, 1, m.length) != 0;
    }
    if (evicted) ReclaimZombies();
    // Watched like any cached range, so that an unmap behind the pool's
    // back invalidates it. Memory the monitor cannot watch (a device
    // mapping under uffd, the module's slots used up) is kept anyway: the
    // pool owns it.
    WatchToken token;
    bool watched = !caching_disabled_;
    if (watched) {
      const int rc = monitor_->Watch(first, last, &token);
      if (rc == -EOPNOTSUPP) {
        watched = false;
      } else if (rc != 0) {
        return SetError(
            rc,
            "regcache_mem_alloc: monitor %s cannot watch [0x%" PRIx64
            ", 0x%" PRIx64 "]: %s",
            regcache_monitor_name(monitor_kind_), first, last, strerror(-rc));
      }
    }
    if (!watched) {
      token = WatchToken{};
      token.generation = StaticGeneration();
      token.expected = token.generation->load();
    }
    regcache_mr mr;
    int rc = RegisterWithEviction(first, last, kPoolAccess, &mr,
                                  "regcache_mem_alloc");
    if (raced_before.live) {
      DropRaced(&raced_before);
      if (rc == -ENOMEM || rc == -EAGAIN)
        rc = RegisterWithEviction(first, last, kPoolAccess, &mr,
                                  "regcache_mem_alloc");
    }
    if (rc != 0) {
      if (watched) monitor_->Unwatch(first, last, token);
      return rc;
    }
    HashTable* retired = nullptr;
    bool raced = false;
    evicted = false;
    Entry* e = nullptr;
    {
      MutexLock l(&mu_);
      raced = watched && (InvalidatedSinceLocked(inval_seq, first, last) ||
                          token.generation->load(std::memory_order_acquire) !=
                              token.expected);
      e = raced ? nullptr : entries_.Allocate();
      if (e != nullptr) {
        FillEntryLocked(e, first, last, mr, token, watched);
        e->pool = true;
        tree_.Insert(&e->node);
        index_.Insert(first, e, last, mr.access, &retired);
        ++valid_entries_;
        valid_bytes_ += mr.length;
        ++pool_entries_;
        SetState(e, kValid);
        block->entry = e;
        block->entry_seq = e->seq.load(std::memory_order_relaxed);
        if (OverLimitsLocked())
          evicted = EvictLocked(/*all_unused=*/false) != 0;
      }
      AdoptRetiredLocked(retired);
    }
    if (raced) {
      if (watched) monitor_->Unwatch(first, last, token);
      raced_before.mr = mr;
      raced_before.live = true;
      continue;
    }
    if (e == nullptr) {
      registrar_.dereg(registrar_.ctx, &mr);
      deregistrations_.fetch_add(1, std::memory_order_relaxed);
      if (watched) monitor_->Unwatch(first, last, token);
      return SetError(-ENOMEM,
                      "regcache_mem_alloc: the cache's entry table is full");
    }
    if (retired != nullptr) FreeRetiredTables();
    if (evicted) ReclaimZombies();
    return 0;
  }
  return SetError(-EBUSY,
                  "regcache_mem_alloc: [0x%" PRIx64 ", 0x%" PRIx64
                  "] was invalidated during each of %d registrations",
                  first, last, kMaxPoolRegisterAttempts);
}

int Cache::MemAlloc(size_t length, uint32_t flags, void** out) {
  if (length > kMaxLength) {
    return SetError(
        -ENOMEM, "regcache_mem_alloc: %zu bytes is beyond any machine's memory",
        length);
  }
  int rc = PoolPrologue("regcache_mem_alloc");
  if (rc != 0) return rc;
  if (PoolBlock* b = TakeFreeBlock(length, flags)) {
    mem_allocs_.fetch_add(1, std::memory_order_relaxed);
    mem_reuses_.fetch_add(1, std::memory_order_relaxed);
    mem_kind_allocs_[int(b->kind)].fetch_add(1, std::memory_order_relaxed);
    mem_kind_bytes_[int(b->kind)].fetch_add(b->length,
                                            std::memory_order_relaxed);
    *out = reinterpret_cast<void*>(b->base);
    return 0;
  }

  const size_t page = page_mask_ + 1;
  const size_t unit = RoundingUnit(flags, page);
  const size_t reserved = RoundUp(length, unit);
  rc = ReservePoolRoom(reserved);
  if (rc != 0) return rc;
  auto* block = new PoolBlock;
  PoolMapping m;
  std::string why;
  rc = MapPoolMemory(length, flags, &m, &why);
  if (rc != 0) {
    delete block;
    UnreservePoolRoom(reserved);
    return SetError(rc, "regcache_mem_alloc: %s", why.c_str());
  }
  block->base = m.base;
  block->length = m.length;
  block->kind = m.kind;
  rc = RegisterPoolBlock(m, block);
  if (rc != 0) {
    UnmapPoolMemory(m.base, m.length);
    delete block;
    UnreservePoolRoom(reserved);
    return rc;
  }
  block->allocated = true;
  {
    MutexLock p(&pool_mu_);
    // The reservation becomes the block: a mapping may be smaller than
    // the unit reserved for (hugetlb and THP page sizes differ).
    pool_bytes_ = pool_bytes_ - reserved + m.length;
    pool_blocks_.emplace(m.base, block);
    mem_bytes_now_.fetch_add(m.length, std::memory_order_relaxed);
  }
  mem_allocs_.fetch_add(1, std::memory_order_relaxed);
  mem_kind_allocs_[int(m.kind)].fetch_add(1, std::memory_order_relaxed);
  mem_kind_bytes_[int(m.kind)].fetch_add(m.length, std::memory_order_relaxed);
  *out = reinterpret_cast<void*>(m.base);
  return 0;
}

int Cache::MemFree(void* addr) {
  int rc = PoolPrologue("regcache_mem_free");
  if (rc != 0) return rc;
  const uint64_t a = reinterpret_cast<uintptr_t>(addr);
  PoolBlock* lost = nullptr;
  {
    MutexLock p(&pool_mu_);
    auto it = pool_blocks_.find(a);
    if (it == pool_blocks_.end()) {
      auto next = pool_blocks_.upper_bound(a);
      if (next != pool_blocks_.begin()) {
        const PoolBlock* b = std::prev(next)->second;
        if (a - b->base < b->length) {
          return SetError(
              -ENOENT,
              "regcache_mem_free: %p is inside the block at %p, not "
              "an address regcache_mem_alloc() returned",
              addr, reinterpret_cast<void*>(b->base));
        }
      }
      return SetError(-ENOENT,
                      "regcache_mem_free: %p was not allocated by "
                      "regcache_mem_alloc() on this cache (or was freed and "
                      "returned to the system)",
                      addr);
    }
    PoolBlock* b = it->second;
    if (!b->allocated)
      return SetError(-ENOENT, "regcache_mem_free: %p was already freed", addr);
    bool ours;
    {
      MutexLock l(&mu_);
      ours = BlockIsOursLocked(b);
    }
    if (ours) {
      b->allocated = false;
      pool_free_.emplace(b->length, b);
      mem_free_bytes_now_.fetch_add(b->length, std::memory_order_relaxed);
    } else {
      // Invalidated behind the pool's back: forget it, never unmap it.
      pool_blocks_.erase(it);
      pool_bytes_ -= b->length;
      --pool_count_;
      mem_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
      lost = b;
    }
  }
  delete lost;
  return 0;
}

int Cache::MemTrim() {
  int rc = PoolPrologue("regcache_mem_trim");
  if (rc != 0) return rc;
  TrimFreeBlocks();
  return 0;
}

void Cache::DetachFreeBlocksLocked(std::vector<PoolBlock*>* out) {
  for (auto& [length, b] : pool_free_) {
    pool_blocks_.erase(b->base);
    pool_bytes_ -= b->length;
    --pool_count_;
    mem_free_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
    mem_bytes_now_.fetch_sub(b->length, std::memory_order_relaxed);
    out->push_back(b);
  }
  pool_free_.clear();
}

size_t Cache::TrimFreeBlocks() {
  std::vector<PoolBlock*> release;
  {
    MutexLock p(&pool_mu_);
    DetachFreeBlocksLocked(&release);
  }
  return ReleaseBlocks(release);
}

size_t Cache::ReleaseBlocks(const std::vector<PoolBlock*>& blocks) {
  if (blocks.empty()) return 0;
  std::vector<char> ours(blocks.size(), 0);
  {
    MutexLock l(&mu_);
    for (size_t i = 0; i < blocks.size(); ++i) {
      PoolBlock* b = blocks[i];
      if (!BlockIsOursLocked(b)) continue;
      ours[i] = 1;
      RecordInvalidationLocked(b->base, b->base + (b->length - 1));
      KillLocked(b->entry);
    }
  }
  ReclaimZombies();  // deregisters them (a block someone holds a handle
                     // on goes at that handle's put, as any zombie)
  size_t unmapped = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (ours[i]) {
      UnmapPoolMemory(blocks[i]->base, blocks[i]->length);
      ++unmapped;
    }
    delete blocks[i];
  }
  return unmapped;
}

std::vector<PoolMapping> Cache::DetachPoolAtDestroy() {
  std::vector<PoolMapping> mappings;
  std::vector<PoolBlock*> blocks;
  {
    MutexLock p(&pool_mu_);
    mappings.reserve(pool_blocks_.size());
    blocks.reserve(pool_blocks_.size());
    {
      MutexLock l(&mu_);
      for (auto& [base, b] : pool_blocks_) {
        if (BlockIsOursLocked(b))
          mappings.push_back(PoolMapping{b->base, b->length, b->kind});
        blocks.push_back(b);
      }
    }
    pool_blocks_.clear();
    pool_free_.clear();
    pool_bytes_ = 0;
    pool_count_ = 0;
  }
  for (PoolBlock* b : blocks) delete b;
  mem_bytes_now_.store(0, std::memory_order_relaxed);
  mem_free_bytes_now_.store(0, std::memory_order_relaxed);
  return mappings;
}

bool Cache::CheckPoolInvariants(std::string* why) {
  MutexLock p(&pool_mu_);
  size_t bytes = 0, free_bytes = 0, free_count = 0;
  for (auto& [base, b] : pool_blocks_) {
    if (b->base != base) {
      *why = "a pool block is filed under another address";
      return false;
    }
    bytes += b->length;
    if (!b->allocated) {
      free_bytes += b->length;
      ++free_count;
    }
  }
  if (bytes != pool_bytes_ || pool_blocks_.size() != pool_count_) {
    *why =
        "pool_bytes_/pool_count_ disagree with the blocks (or an "
        "allocation is under way)";
    return false;
  }
  if (free_count != pool_free_.size()) {
    *why = "the free list and the blocks' allocated flags disagree";
    return false;
  }
  for (auto& [length, b] : pool_free_) {
    if (b->allocated || b->length != length ||
        pool_blocks_.count(b->base) != 1 || pool_blocks_.at(b->base) != b) {
      *why = "a free-list block is allocated, misfiled or not a block";
      return false;
    }
  }
  if (mem_bytes_now_.load() != bytes ||
      mem_free_bytes_now_.load() != free_bytes) {
    *why = "mem_bytes_now/mem_free_bytes_now disagree with the blocks";
    return false;
  }
  MutexLock l(&mu_);
  for (auto& [base, b] : pool_blocks_) {
    if (BlockIsOursLocked(b) &&
        (!b->entry->pool || SeqState(b->entry_seq) != kValid ||
         b->entry->first.load() != b->base ||
         b->entry->last.load() != b->base + b->length - 1)) {
      *why = "a pool block's entry is not a valid pool entry over the block";
      return false;
    }
  }
  return true;
}

}  // namespace regcache_internal
