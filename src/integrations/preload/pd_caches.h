// SPDX-License-Identifier: BSD-2-Clause
// The interposer's state: one regcache per protection domain, the
// registrations handed to the program, and the counters.
//
// Each ibv_reg_mr* the program makes on a PD is served by that PD's cache
// (regcache_get) and answered with a CallerMr of its own: a struct ibv_mr
// with the caller's addr/length and the keys of the cached registration
// that covers it. ibv_dereg_mr of a CallerMr puts the handle back; the
// registration stays cached until the module reports its memory unmapped,
// the limits evict it, or the PD goes away. Registrations the policy
// passes through (policy.h) are libibverbs' own MRs, untouched.
//
// Lifetime: a PdCaches entry lives from the PD's first registration to
// ibv_dealloc_pd (if no CallerMr of it is left) or ibv_close_device of its
// context; ibv_dealloc_pd with CallerMrs outstanding only flushes the
// unused registrations (libibverbs then fails with EBUSY, as it would
// without the interposer). After ibv_close_device, CallerMrs of that
// context are orphans: their dereg frees them and returns 0.
//
// Thread safety: every function may be called from any thread. Locks:
// pds_mu_ (the PD table) and registry_mu_ (the set of CallerMrs) are
// leaves; neither is held across a regcache call or a libibverbs call.
#ifndef REGCACHE_SRC_INTEGRATIONS_PRELOAD_PD_CACHES_H_
#define REGCACHE_SRC_INTEGRATIONS_PRELOAD_PD_CACHES_H_

#include <infiniband/verbs.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "base/thread_annotations.h"
#include "integrations/preload/policy.h"
#include "regcache/regcache.h"

namespace regcache_preload {

// libibverbs' real entry points (the next definitions after ours).
struct RealVerbs {
  ibv_mr* (*reg_mr_iova2)(ibv_pd*, void*, size_t, uint64_t, unsigned int);
  int (*dereg_mr)(ibv_mr*);
  int (*rereg_mr)(ibv_mr*, int, ibv_pd*, void*, size_t, int);
  int (*dealloc_pd)(ibv_pd*);
  int (*close_device)(ibv_context*);
};

struct PdCache;

// What the program holds for a cached registration. `mr` first: the
// program's struct ibv_mr * points at it.
struct CallerMr {
  ibv_mr mr;
  PdCache* pd_cache;
  regcache_handle_t* handle;  // nullptr after ibv_rereg_mr made it private
  ibv_mr* private_mr;         // ibv_rereg_mr's own registration, or nullptr
};

struct PdCache {
  ibv_pd* pd = nullptr;
  regcache_t* cache = nullptr;
  regcache_registrar registrar{};
  std::atomic<uint64_t> caller_mrs{0};  // CallerMrs not yet deregistered
  std::atomic<bool> orphaned{false};    // its context was closed
};

// Counters (relaxed; REGCACHE_STATS prints them).
struct PreloadCounters {
  std::atomic<uint64_t> reg_calls{0};
  std::atomic<uint64_t> passed[static_cast<int>(PassReason::kCount)]{};
  std::atomic<uint64_t> pass_errors{0};   // pass-through registrations failed
  std::atomic<uint64_t> cache_errors{0};  // regcache_get failed
  std::atomic<uint64_t> dereg_cached{0};
  std::atomic<uint64_t> dereg_passed{0};
  std::atomic<uint64_t> rereg_calls{0};
  std::atomic<uint64_t> pd_flushes{0};
};

// What the caches did, summed (those alive and those already destroyed).
struct CacheTotals {
  uint64_t caches = 0;
  uint64_t registrations = 0;  // the caches' registrar calls
  uint64_t hits = 0;
  uint64_t invalidations = 0;
  uint64_t kernel_watches = 0;   // the module's count of watched ranges
  uint64_t kernel_unmapped = 0;  // ... and of those it made stale
  uint64_t kernel_cleared = 0;
  uint64_t kernel_late = 0;
};

class PdCaches {
 public:
  PdCaches(const RealVerbs& real, const PreloadConfig& config);

  // ibv_reg_mr and friends. Returns the MR for the program, or nullptr with
  // errno set, exactly as libibverbs would.
  ibv_mr* Register(ibv_pd* pd, void* addr, size_t length, uint64_t iova,
                   unsigned int access);
  // ibv_dereg_mr: 0 or an errno value (libibverbs' convention).
  int Deregister(ibv_mr* mr);
  int Rereg(ibv_mr* mr, int flags, ibv_pd* pd, void* addr, size_t length,
            int access);
  int DeallocPd(ibv_pd* pd);
  int CloseDevice(ibv_context* context);

  // Prints the counters and the caches' totals (one line) to stderr.
  void PrintSummary(const char* when);
  const PreloadCounters& counters() const { return counters_; }

 private:
  bool IsCallerMr(ibv_mr* mr);
  PdCache* CacheFor(ibv_pd* pd);  // nullptr: caching is off
  ibv_mr* PassThrough(ibv_pd* pd, void* addr, size_t length, uint64_t iova,
                      unsigned int access, PassReason reason);
  void FlushAllForMemory();
  static void SplitForDontfork(void* addr, size_t length);
  // Adds pc's statistics to *totals (pc's cache must be alive).
  static void AddTotals(PdCache* pc, CacheTotals* totals);
  // Destroys pc's cache, keeping its statistics in destroyed_.
  void DestroyCache(PdCache* pc);
  void ReportCacheFailure(const char* why);

  const RealVerbs real_;
  const PreloadConfig config_;
  PreloadCounters counters_;
  std::atomic<bool> caching_off_{false};
  std::atomic<bool> failure_reported_{false};
  std::atomic<bool> started_{false};
  std::atomic<bool> split_for_dontfork_{false};

  regcache_internal::Mutex pds_mu_;
  std::unordered_map<ibv_pd*, PdCache*> pds_ RC_GUARDED_BY(pds_mu_);
  CacheTotals destroyed_ RC_GUARDED_BY(pds_mu_);
  regcache_internal::Mutex registry_mu_;
  std::unordered_set<ibv_mr*> caller_mrs_ RC_GUARDED_BY(registry_mu_);
};

// The process's instance (made on the first interposed call; never freed).
PdCaches* Instance();

}  // namespace regcache_preload

#endif  // REGCACHE_SRC_INTEGRATIONS_PRELOAD_PD_CACHES_H_
