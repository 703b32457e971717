// SPDX-License-Identifier: BSD-2-Clause
// The interposer's per-PD caches and the program's CallerMrs (pd_caches.h
// has the model, the lifetime rules and the locks). The main class is
// PdCaches; interpose.cc calls it from the exported ibverbs symbols.
#include "integrations/preload/pd_caches.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <vector>

#include "core/cache.h"
#include "registrar/verbs_access.h"

namespace regcache_preload {

using regcache_internal::MutexLock;

PdCaches::PdCaches(const RealVerbs& real, const PreloadConfig& config)
    : real_(real), config_(config) {}

namespace {

// The registrar's context: the PD and the real ibv_reg_mr_iova2/dereg.
struct RegistrarCtx {
  ibv_pd* pd;
  const RealVerbs* real;
};

int RegRealVerbs(void* ctx, void* addr, size_t length, uint32_t access,
                 regcache_mr* out) {
  auto* c = static_cast<RegistrarCtx*>(ctx);
  const uint32_t granted = regcache_internal::WidenForVerbs(access);
  errno = 0;
  ibv_mr* mr = c->real->reg_mr_iova2(
      c->pd, addr, length, reinterpret_cast<uintptr_t>(addr),
      static_cast<unsigned int>(regcache_internal::IbvAccessOf(granted)));
  if (mr == nullptr) return errno != 0 ? -errno : -EIO;
  regcache_internal::FillFromIbvMr(mr, granted, out);
  return 0;
}

int DeregRealVerbs(void* ctx, regcache_mr* mr) {
  auto* c = static_cast<RegistrarCtx*>(ctx);
  const int ret = c->real->dereg_mr(static_cast<ibv_mr*>(mr->backend));
  return ret == 0 ? 0 : -ret;
}

}  // namespace

void PdCaches::ReportCacheFailure(const char* why) {
  if (failure_reported_.exchange(true)) return;
  fprintf(stderr,
          "regcache-preload: pid %d: not caching registrations: %s; every "
          "registration goes to libibverbs as without the interposer\n",
          static_cast<int>(getpid()), why);
}

PdCache* PdCaches::CacheFor(ibv_pd* pd) {
  if (caching_off_.load(std::memory_order_relaxed)) return nullptr;
  {
    MutexLock l(&pds_mu_);
    auto it = pds_.find(pd);
    if (it != pds_.end()) return it->second;
  }
  // The first registration on this PD: make its cache outside the lock
  // (regcache_create opens /dev/regcache and starts threads).
  regcache_config config;
  if (regcache_config_init(&config) != 0) {
    // A bad REGCACHE_* value: the message names it; defaults stay.
    fprintf(stderr, "regcache-preload: %s\n", regcache_last_error());
  }
  if (config.monitor == REGCACHE_MONITOR_AUTO)
    config.monitor = REGCACHE_MONITOR_KMOD;
  if (config.monitor == REGCACHE_MONITOR_NONE) {
    caching_off_.store(true);
    ReportCacheFailure(
        "REGCACHE_MONITOR=none would leave unmapped memory registered (use "
        "kmod or uffd)");
    return nullptr;
  }
  config.mode = REGCACHE_MODE_PIN;
  auto* pc = new PdCache;
  pc->pd = pd;
  auto* ctx = new RegistrarCtx{pd, &real_};
  pc->registrar = {"ibverbs-preload", RegRealVerbs, DeregRealVerbs, ctx};
  const int rc = regcache_create(&pc->registrar, &config, &pc->cache);
  if (rc != 0) {
    const std::string why = regcache_last_error();
    delete ctx;
    delete pc;
    // The monitor is missing (no module): nothing will work on other PDs
    // either. Other errors are per PD; say so and pass this one through.
    if (rc == -ENODEV) caching_off_.store(true);
    ReportCacheFailure(why.c_str());
    return nullptr;
  }
  MutexLock l(&pds_mu_);
  auto [it, inserted] = pds_.emplace(pd, pc);
  if (!inserted) {
    // Another thread made one meanwhile: keep theirs.
    regcache_destroy(pc->cache);
    delete static_cast<RegistrarCtx*>(pc->registrar.ctx);
    delete pc;
  }
  return it->second;
}

ibv_mr* PdCaches::PassThrough(ibv_pd* pd, void* addr, size_t length,
                              uint64_t iova, unsigned int access,
                              PassReason reason) {
  counters_.passed[static_cast<int>(reason)].fetch_add(
      1, std::memory_order_relaxed);
  ibv_mr* mr = real_.reg_mr_iova2(pd, addr, length, iova, access);
  if (mr == nullptr && (errno == ENOMEM || errno == EAGAIN)) {
    // Out of pinnable memory: the caches may hold what the program thinks
    // it deregistered. Give it back and try once more.
    const int saved = errno;
    FlushAllForMemory();
    mr = real_.reg_mr_iova2(pd, addr, length, iova, access);
    if (mr == nullptr && errno == 0) errno = saved;
  }
  if (mr == nullptr)
    counters_.pass_errors.fetch_add(1, std::memory_order_relaxed);
  return mr;
}

void PdCaches::FlushAllForMemory() {
  std::vector<PdCache*> all;
  {
    MutexLock l(&pds_mu_);
    for (auto& [pd, pc] : pds_) all.push_back(pc);
  }
  for (PdCache* pc : all) regcache_flush(pc->cache);
}

ibv_mr* PdCaches::Register(ibv_pd* pd, void* addr, size_t length, uint64_t iova,
                           unsigned int access) {
  counters_.reg_calls.fetch_add(1, std::memory_order_relaxed);
  if (config_.print_stats && !started_.exchange(true)) PrintSummary("start");
  uint32_t regcache_access = 0;
  PassReason reason = config_.enabled
                          ? Classify(addr, length, iova, access,
                                     config_.cache_remote, &regcache_access)
                          : PassReason::kDisabled;
  if (pd == nullptr) reason = PassReason::kBadArgument;
  PdCache* pc = reason == PassReason::kCached ? CacheFor(pd) : nullptr;
  if (pc == nullptr) {
    if (reason == PassReason::kCached) reason = PassReason::kDisabled;
    return PassThrough(pd, addr, length, iova, access, reason);
  }
  auto* out = static_cast<CallerMr*>(malloc(sizeof(CallerMr)));
  if (out == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  // Not whenever ibv_is_fork_initialized() says IBV_FORK_ENABLED: one
  // madvise() per call costs a hit as much as an uncached registration on
  // an emulated CPU, and most ranges never straddle a huge page boundary.
  const bool split = split_for_dontfork_.load(std::memory_order_relaxed);
  if (split) SplitForDontfork(addr, length);
  regcache_handle_t* handle = nullptr;
  int rc = regcache_get(pc->cache, addr, length, regcache_access, &handle);
  if (rc == -EBUSY && !split) {
    // Each registration of the range made it stale at once: the sign of
    // libibverbs' fork tracking (SplitForDontfork), seen under Open MPI
    // while ibv_is_fork_initialized() did not say IBV_FORK_ENABLED. From now on
    // split first.
    split_for_dontfork_.store(true, std::memory_order_relaxed);
    SplitForDontfork(addr, length);
    rc = regcache_get(pc->cache, addr, length, regcache_access, &handle);
  }
  if (rc == -ENOMEM || rc == -EAGAIN) {
    // The cache evicted what it could; other PDs' caches may hold the rest.
    FlushAllForMemory();
    rc = regcache_get(pc->cache, addr, length, regcache_access, &handle);
  }
  if (rc != 0) {
    free(out);
    if (counters_.cache_errors.fetch_add(1, std::memory_order_relaxed) == 0) {
      // The first failure says why; the program sees errno as libibverbs
      // would set it.
      fprintf(stderr,
              "regcache-preload: pid %d: a registration of %zu bytes at %p "
              "failed: %s (reported once)\n",
              static_cast<int>(getpid()), length, addr, regcache_last_error());
      PrintSummary("at the failure");
    }
    errno = -rc;
    return nullptr;
  }
  const regcache_mr* cached = regcache_handle_mr(handle);
  const auto* backend = static_cast<const ibv_mr*>(cached->backend);
  out->mr.context = pd->context;
  out->mr.pd = pd;
  out->mr.addr = addr;
  out->mr.length = length;
  out->mr.handle = backend->handle;
  out->mr.lkey = cached->lkey;
  out->mr.rkey = cached->rkey;
  out->pd_cache = pc;
  out->handle = handle;
  out->private_mr = nullptr;
  pc->caller_mrs.fetch_add(1, std::memory_order_relaxed);
  counters_.passed[static_cast<int>(PassReason::kCached)].fetch_add(
      1, std::memory_order_relaxed);
  {
    MutexLock l(&registry_mu_);
    caller_mrs_.insert(&out->mr);
  }
  return &out->mr;
}

// With fork tracking on (ibv_fork_init(), RDMAV_FORK_SAFE), libibverbs'
// ibv_reg_mr calls madvise(MADV_DONTFORK) on the range, which splits the
// VMA at its ends; Linux then "splits" the transparent huge page mapping
// around each end (__split_huge_pmd), telling every mmu notifier that the
// surrounding 2 MiB changed (MMU_NOTIFY_CLEAR), even where nothing was
// huge. The cache watches a range before it registers it, so that notice
// would make each registration stale at once (retried, then -EBUSY).
// Splitting the VMA first, before the cache watches, leaves the
// registration's own madvise nothing to split. A range already cached is
// DONTFORK already (its registration holds it), so this is a no-op there;
// libibverbs makes the range DOFORK again when that registration goes.
// Done from the first registration that came back stale from its own
// registration on (-EBUSY), for every registration after it.
void PdCaches::SplitForDontfork(void* addr, size_t length) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(addr) & ~(page - 1);
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(addr) + length + page - 1) & ~(page - 1);
  if (end <= first) return;
  madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTFORK);
}

bool PdCaches::IsCallerMr(ibv_mr* mr) {
  MutexLock l(&registry_mu_);
  return caller_mrs_.count(mr) != 0;
}

int PdCaches::Deregister(ibv_mr* mr) {
  bool ours;
  {
    MutexLock l(&registry_mu_);
    ours = caller_mrs_.erase(mr) != 0;
  }
  if (!ours) {
    counters_.dereg_passed.fetch_add(1, std::memory_order_relaxed);
    return real_.dereg_mr(mr);
  }
  counters_.dereg_cached.fetch_add(1, std::memory_order_relaxed);
  auto* c = reinterpret_cast<CallerMr*>(mr);
  PdCache* pc = c->pd_cache;
  int ret = 0;
  if (c->private_mr != nullptr) {
    ret = real_.dereg_mr(c->private_mr);
  } else if (!pc->orphaned.load(std::memory_order_acquire)) {
    const int rc = regcache_put(pc->cache, c->handle);
    ret = rc == 0 ? 0 : -rc;
  }
  if (ret != 0) {
    // Nothing was released: the program still owns the MR.
    MutexLock l(&registry_mu_);
    caller_mrs_.insert(mr);
    return ret;
  }
  pc->caller_mrs.fetch_sub(1, std::memory_order_relaxed);
  free(c);
  return 0;
}

// A CallerMr shares its registration with others, so it cannot be changed
// in place: it gets a registration of its own with the new attributes
// (ibv_dereg_mr then deregisters that). The cached ranges are evicted, as
// the program says their translation changed. Other MRs pass through.
int PdCaches::Rereg(ibv_mr* mr, int flags, ibv_pd* pd, void* addr,
                    size_t length, int access) {
  counters_.rereg_calls.fetch_add(1, std::memory_order_relaxed);
  if (!IsCallerMr(mr)) {
    if (mr != nullptr && mr->pd != nullptr && mr->addr != nullptr &&
        mr->length != 0) {
      MutexLock l(&pds_mu_);
      auto it = pds_.find(mr->pd);
      if (it != pds_.end())
        regcache_invalidate(it->second->cache, mr->addr, mr->length);
    }
    return real_.rereg_mr(mr, flags, pd, addr, length, access);
  }
  auto* c = reinterpret_cast<CallerMr*>(mr);
  if (flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
  ibv_pd* new_pd = (flags & IBV_REREG_MR_CHANGE_PD) ? pd : mr->pd;
  void* new_addr = mr->addr;
  size_t new_length = mr->length;
  if (flags & IBV_REREG_MR_CHANGE_TRANSLATION) {
    new_addr = addr;
    new_length = length;
  }
  int new_access = access;
  if (!(flags & IBV_REREG_MR_CHANGE_ACCESS)) {
    // The access the caller asked for originally is not kept; what the
    // cached registration grants is at least that.
    const regcache_mr* cached =
        c->handle != nullptr ? regcache_handle_mr(c->handle) : nullptr;
    new_access = cached != nullptr
                     ? regcache_internal::IbvAccessOf(cached->access)
                     : IBV_ACCESS_LOCAL_WRITE;
  }
  if (new_pd == nullptr || new_addr == nullptr || new_length == 0) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
  if (!c->pd_cache->orphaned.load(std::memory_order_acquire)) {
    regcache_invalidate(c->pd_cache->cache, mr->addr, mr->length);
  }
  ibv_mr* fresh = real_.reg_mr_iova2(new_pd, new_addr, new_length,
                                     reinterpret_cast<uintptr_t>(new_addr),
                                     static_cast<unsigned int>(new_access));
  if (fresh == nullptr) return IBV_REREG_MR_ERR_CMD;
  if (c->private_mr != nullptr) {
    real_.dereg_mr(c->private_mr);
  } else if (!c->pd_cache->orphaned.load(std::memory_order_acquire)) {
    regcache_put(c->pd_cache->cache, c->handle);
  }
  c->handle = nullptr;
  c->private_mr = fresh;
  mr->context = fresh->context;
  mr->pd = fresh->pd;
  mr->addr = new_addr;
  mr->length = new_length;
  mr->handle = fresh->handle;
  mr->lkey = fresh->lkey;
  mr->rkey = fresh->rkey;
  return 0;
}

int PdCaches::DeallocPd(ibv_pd* pd) {
  PdCache* pc = nullptr;
  {
    MutexLock l(&pds_mu_);
    auto it = pds_.find(pd);
    if (it != pds_.end()) {
      pc = it->second;
      // Only a PD with no CallerMr left loses its cache; otherwise the
      // program still holds registrations and libibverbs says EBUSY.
      if (pc->caller_mrs.load() == 0) pds_.erase(it);
    }
  }
  if (pc != nullptr) {
    counters_.pd_flushes.fetch_add(1, std::memory_order_relaxed);
    if (pc->caller_mrs.load() == 0) {
      DestroyCache(pc);
      delete static_cast<RegistrarCtx*>(pc->registrar.ctx);
      delete pc;
    } else {
      regcache_flush(pc->cache);
    }
  }
  return real_.dealloc_pd(pd);
}

int PdCaches::CloseDevice(ibv_context* context) {
  std::vector<PdCache*> closing;
  {
    MutexLock l(&pds_mu_);
    for (auto it = pds_.begin(); it != pds_.end();) {
      if (it->first->context == context) {
        closing.push_back(it->second);
        it = pds_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (PdCache* pc : closing) {
    counters_.pd_flushes.fetch_add(1, std::memory_order_relaxed);
    // Deregisters everything, also what CallerMrs still name: the context
    // is going away. Those CallerMrs become orphans (pd_caches.h).
    pc->orphaned.store(true, std::memory_order_release);
    DestroyCache(pc);
    if (pc->caller_mrs.load() == 0) {
      delete static_cast<RegistrarCtx*>(pc->registrar.ctx);
      delete pc;
    }
  }
  return real_.close_device(context);
}

void PdCaches::AddTotals(PdCache* pc, CacheTotals* totals) {
  struct regcache_stats st;
  if (regcache_stats(pc->cache, &st) != 0) return;
  ++totals->caches;
  totals->registrations += st.registrations;
  totals->hits += st.hits;
  for (uint64_t n : st.invalidations) totals->invalidations += n;
  regcache_internal::KernelCounts k;
  if (reinterpret_cast<regcache_internal::Cache*>(pc->cache)->KernelCounters(
          &k) == 0) {
    totals->kernel_watches += k.watched;
    totals->kernel_unmapped += k.unmapped;
    totals->kernel_cleared += k.cleared;
    totals->kernel_late += k.late;
  }
}

void PdCaches::DestroyCache(PdCache* pc) {
  CacheTotals last;
  AddTotals(pc, &last);
  regcache_destroy(pc->cache);  // prints its statistics if REGCACHE_STATS
  pc->cache = nullptr;
  MutexLock l(&pds_mu_);
  destroyed_.caches += last.caches;
  destroyed_.registrations += last.registrations;
  destroyed_.hits += last.hits;
  destroyed_.invalidations += last.invalidations;
  destroyed_.kernel_watches += last.kernel_watches;
  destroyed_.kernel_unmapped += last.kernel_unmapped;
  destroyed_.kernel_cleared += last.kernel_cleared;
  destroyed_.kernel_late += last.kernel_late;
}

void PdCaches::PrintSummary(const char* when) {
  CacheTotals t;
  {
    MutexLock l(&pds_mu_);
    t = destroyed_;
    for (auto& [pd, pc] : pds_) AddTotals(pc, &t);
  }
  std::string passed;
  for (int i = 1; i < static_cast<int>(PassReason::kCount); ++i) {
    const uint64_t n = counters_.passed[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    passed += " ";
    passed += PassReasonName(static_cast<PassReason>(i));
    passed += "=" + std::to_string(n);
  }
  const char* mode = !config_.enabled ? "REGCACHE_PRELOAD=0 (counting only)"
                     : caching_off_.load() ? "not caching"
                                           : "caching per PD";
  if (strcmp(when, "start") == 0) {
    fprintf(stderr,
            "regcache-preload: pid %d: interposing ibverbs registrations, %s, "
            "remote access %s\n",
            static_cast<int>(getpid()), mode,
            config_.cache_remote ? "cached" : "passed through");
    return;
  }
  fprintf(stderr,
          "regcache-preload: pid %d %s: %s; reg calls %llu (cached %llu, "
          "passed through%s%s), dereg %llu cached + %llu passed, rereg %llu; "
          "caches %llu: registrations %llu, hits %llu, invalidations %llu, "
          "ranges the module watched %llu (made stale: unmap %llu, clear "
          "%llu, late %llu)\n",
          static_cast<int>(getpid()), when, mode,
          static_cast<unsigned long long>(counters_.reg_calls.load()),
          static_cast<unsigned long long>(
              counters_.passed[static_cast<int>(PassReason::kCached)].load()),
          passed.empty() ? " 0" : "", passed.c_str(),
          static_cast<unsigned long long>(counters_.dereg_cached.load()),
          static_cast<unsigned long long>(counters_.dereg_passed.load()),
          static_cast<unsigned long long>(counters_.rereg_calls.load()),
          static_cast<unsigned long long>(t.caches),
          static_cast<unsigned long long>(t.registrations),
          static_cast<unsigned long long>(t.hits),
          static_cast<unsigned long long>(t.invalidations),
          static_cast<unsigned long long>(t.kernel_watches),
          static_cast<unsigned long long>(t.kernel_unmapped),
          static_cast<unsigned long long>(t.kernel_cleared),
          static_cast<unsigned long long>(t.kernel_late));
}

}  // namespace regcache_preload
