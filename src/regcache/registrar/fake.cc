// SPDX-License-Identifier: BSD-2-Clause
// The fake registrar: regcache_registrar_fake().
//
// It registers nothing. reg hands out lkey = rkey = key from one
// process-global counter (so keys are unique across every cache in the
// process and never 0) and, in the "fake-mlock" variant, mlock()s the range
// so RLIMIT_MEMLOCK bites as it would for ibv_reg_mr. The plain "fake" reg
// is one relaxed atomic increment: benchmarks use it as the no-op registrar.
//
// mlock() does not nest, so overlapping registrations share a process-wide
// RangeRefcount of the pages this registrar has locked; dereg munlock()s only
// the pages whose count falls to zero. Memory the application locked itself
// with mlock() is not tracked and is unlocked by a dereg that covers it.
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "base/errors.h"
#include "base/thread_annotations.h"
#include "regcache/regcache.h"
#include "registrar/range_refcount.h"

namespace regcache_internal {
namespace {

// Next key to hand out. Starts at 1: 0 means "no key" in regcache_mr.
std::atomic<uint64_t> g_next_fake_key{1};

// Pages locked by every fake-mlock registration in the process.
struct MlockState {
  Mutex mu;
  RangeRefcount locked RC_GUARDED_BY(mu);  // page-aligned ranges only
};

MlockState* NewMlockState();

MlockState& GetMlockState() {
  // Never destroyed: a cache may deregister from an atexit handler.
  static MlockState* state = NewMlockState();
  return *state;
}

// fork() with another thread inside reg or dereg must not leave the child a
// locked mutex, so fork waits for mu. mu is a leaf lock (reg and dereg run
// without cache locks and take nothing else), so this cannot deadlock. The
// child keeps the parent's counts though it inherits no locked pages: its
// dereg of an inherited registration still balances, and its reg mlock()s
// the whole range regardless of the counts.
void ForkPrepare() RC_NO_TSA { GetMlockState().mu.Lock(); }
void ForkRelease() RC_NO_TSA { GetMlockState().mu.Unlock(); }

MlockState* NewMlockState() {
  auto* state = new MlockState;
  pthread_atfork(ForkPrepare, ForkRelease, ForkRelease);
  return state;
}

// mlock()/munlock() as system calls: the sanitizers' runtimes intercept the
// libc functions and turn them into no-ops that return 0, which would make
// the fake lock nothing in ASan/TSan builds.
int SysMlock(const void* addr, size_t length) {
  return static_cast<int>(syscall(SYS_mlock, addr, length));
}
int SysMunlock(const void* addr, size_t length) {
  return static_cast<int>(syscall(SYS_munlock, addr, length));
}

uint64_t PageSize() {
  static const uint64_t page_size =
      static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page_size;
}

// [addr, addr + length) rounded out to whole pages, as a closed range.
// False when the range is empty or wraps the address space.
bool PageRange(const void* addr, size_t length, ClosedRange* out) {
  const uint64_t start = reinterpret_cast<uintptr_t>(addr);
  if (length == 0 || start + (length - 1) < start) return false;
  const uint64_t mask = PageSize() - 1;
  out->first = start & ~mask;
  out->last = (start + (length - 1)) | mask;
  return true;
}

void* RangeAddr(const ClosedRange& r) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(r.first));
}
size_t RangeLength(const ClosedRange& r) { return r.last - r.first + 1; }

void FillKeys(regcache_mr* out) {
  const uint64_t key = g_next_fake_key.fetch_add(1, std::memory_order_relaxed);
  out->lkey = static_cast<uint32_t>(key);
  out->rkey = static_cast<uint32_t>(key);
  out->key = key;
  out->desc = nullptr;
  out->backend = nullptr;
}

// Whether every page of `r` is mapped. msync(MS_ASYNC) does nothing but
// walk the mappings, and fails with ENOMEM at the first hole: one system
// call whatever the length, where mlock() or munlock() of a long range
// works page table by page table before it finds the hole.
bool FullyMapped(const ClosedRange& r) {
  return msync(RangeAddr(r), RangeLength(r), MS_ASYNC) == 0 || errno != ENOMEM;
}

// The mapped parts of `r`, from /proc/self/maps: O(mappings), whatever the
// length of `r` or of its holes.
std::vector<ClosedRange> MappedParts(const ClosedRange& r) {
  std::vector<ClosedRange> parts;
  FILE* maps = fopen("/proc/self/maps", "re");
  if (maps == nullptr) return parts;
  unsigned long long start, end;
  char line[512];
  while (fgets(line, sizeof line, maps) != nullptr) {
    if (sscanf(line, "%llx-%llx", &start, &end) != 2 || end <= start) continue;
    const uint64_t first = start > r.first ? start : r.first;
    const uint64_t last = end - 1 < r.last ? end - 1 : r.last;
    if (first <= last) parts.push_back({first, last});
  }
  fclose(maps);
  return parts;
}

// munlock() [first, last], stepping over holes: munlock() fails with ENOMEM
// at the first unmapped page (the application unmapped part of a registered
// range, which already dropped the lock on those pages), leaving the pages
// after the hole locked. Then every mapped part is unlocked on its own.
void MunlockMapped(const ClosedRange& r) {
  if (SysMunlock(RangeAddr(r), RangeLength(r)) == 0 || errno != ENOMEM) return;
  for (const ClosedRange& part : MappedParts(r)) {
    SysMunlock(RangeAddr(part), RangeLength(part));
  }
}

int FakeReg(void* ctx, void* addr, size_t length, uint32_t access,
            regcache_mr* out) {
  const uint64_t start = reinterpret_cast<uintptr_t>(addr);
  if (length == 0 || start + (length - 1) < start ||
      (access & ~static_cast<uint32_t>(REGCACHE_ACCESS_ALL)) != 0) {
    return -EINVAL;
  }
  FillKeys(out);
  return 0;
}

int FakeDereg(void* ctx, regcache_mr* mr) { return 0; }

int FakeMlockReg(void* ctx, void* addr, size_t length, uint32_t access,
                 regcache_mr* out) {
  ClosedRange range;
  if (!PageRange(addr, length, &range) ||
      (access & ~static_cast<uint32_t>(REGCACHE_ACCESS_ALL)) != 0) {
    return -EINVAL;
  }
  // Unmapped memory is refused at once, as ibv_reg_mr refuses it (EFAULT),
  // before the lock is taken: a bogus length must not keep every other
  // registration waiting while mlock() walks it.
  if (!FullyMapped(range)) return -EFAULT;
  MlockState& state = GetMlockState();
  MutexLock lock(&state.mu);
  // Lock the whole range even where another registration already holds it:
  // mlock() of locked pages is cheap and not charged twice against
  // RLIMIT_MEMLOCK, and it relocks pages that were unmapped and mapped again
  // under a stale registration.
  if (SysMlock(RangeAddr(range), RangeLength(range)) != 0) {
    int err = errno;
    // mlock() may have locked a prefix before failing; undo the part no
    // other registration holds.
    for (const ClosedRange& gap :
         state.locked.Uncovered(range.first, range.last)) {
      MunlockMapped(gap);
    }
    // ENOMEM also means "not mapped" (unmapped since the check above).
    // ibv_reg_mr says EFAULT for that; keep ENOMEM for the RLIMIT_MEMLOCK
    // case, which the cache answers by evicting.
    if (err == ENOMEM && !FullyMapped(range)) err = EFAULT;
    return -err;
  }
  state.locked.Add(range.first, range.last);
  FillKeys(out);
  return 0;
}

int FakeMlockDereg(void* ctx, regcache_mr* mr) {
  ClosedRange range;
  if (mr == nullptr || !PageRange(mr->addr, mr->length, &range)) return -EINVAL;
  std::vector<ClosedRange> released;
  MlockState& state = GetMlockState();
  MutexLock lock(&state.mu);
  // A range this registrar never locked: a double dereg or a foreign mr.
  if (!state.locked.Remove(range.first, range.last, &released)) return -EINVAL;
  for (const ClosedRange& r : released) MunlockMapped(r);
  return 0;
}

}  // namespace
}  // namespace regcache_internal

extern "C" int regcache_registrar_fake(int lock_memory,
                                       struct regcache_registrar* out) {
  using namespace regcache_internal;
  if (out == nullptr) {
    return SetError(-EINVAL, "regcache_registrar_fake: out is NULL");
  }
  if (lock_memory) {
    // Build the shared state (and register its fork handlers) now, on the
    // creating thread: initialised lazily inside the first reg, a fork()
    // during that initialisation left the child waiting for ever on the
    // static's guard.
    GetMlockState();
    *out =
        regcache_registrar{"fake-mlock", FakeMlockReg, FakeMlockDereg, nullptr};
  } else {
    *out = regcache_registrar{"fake", FakeReg, FakeDereg, nullptr};
  }
  return 0;
}
