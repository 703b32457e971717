// SPDX-License-Identifier: BSD-2-Clause
// OdpRegistrar: a regcache_registrar that registers on-demand-paging MRs.
//
// Explicit mode: each reg is ibv_reg_mr(pd, addr, length,
// IBV_ACCESS_ON_DEMAND | the mapped access). Implicit mode (when asked for
// and the device has IBV_ODP_SUPPORT_IMPLICIT): one MR over the whole
// address space, ibv_reg_mr(pd, NULL, SIZE_MAX, IBV_ACCESS_ON_DEMAND | ...),
// registered at creation; every reg then returns its lkey/rkey without a
// verbs call and dereg does nothing. After a registration the range is
// prefetched with ibv_advise_mr() (PREFETCH_WRITE for writable access,
// PREFETCH otherwise; IBV_ADVISE_MR_FLAG_FLUSH when synchronous), so the
// first RDMA does not take a page fault on the device.
//
// An ODP MR never goes stale: the device faults pages in through the
// process's CURRENT mapping at that address, so after munmap/mmap the same
// lkey/rkey reaches the new pages. A cache using this registrar needs no
// invalidation monitor.
//
// A request whose access the device's ODP does not cover on RC (see
// OdpCovers(); e.g. REMOTE_ATOMIC without RC atomic ODP) is refused with
// -EOPNOTSUPP. It is NOT served by a pinned MR instead: the cache has no
// monitor in ODP mode, so a pinned MR could be returned after its memory was
// unmapped. Use REGCACHE_MODE=pin for such applications.
//
// Thread safety: reg and dereg may run concurrently from any threads.
// Lifetime: the pd must outlive the registrar; destroying the registrar
// deregisters the implicit MR (except in a fork child, where the MR belongs
// to the parent).
#ifndef REGCACHE_SRC_ODP_ODP_REGISTRAR_H_
#define REGCACHE_SRC_ODP_ODP_REGISTRAR_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "odp/odp_probe.h"
#include "odp/verbs_ops.h"
#include "regcache/regcache.h"

namespace regcache_internal {

enum class OdpPrefetch {
  kNone,   // no ibv_advise_mr
  kAsync,  // ibv_advise_mr without FLUSH: starts faulting, returns at once
  kSync,   // with IBV_ADVISE_MR_FLAG_FLUSH: returns once the pages are mapped
};

struct OdpOptions {
  // Use one implicit whole-address-space MR when the device supports it.
  // Off by default: an implicit MR with remote access lets any peer holding
  // its rkey reach every address of the process.
  bool implicit = false;
  OdpPrefetch prefetch = OdpPrefetch::kAsync;  // after every registration
};

class OdpRegistrar {
 public:
  // `caps` must say caps.supported(). With options.implicit and
  // caps.implicit() the implicit MR is registered here; if that fails the
  // registrar falls back to explicit MRs and *note says why. Returns 0, or
  // -errno with *note set.
  static int Create(ibv_pd* pd, const OdpCaps& caps, const OdpOptions& options,
                    const VerbsOps& ops, std::unique_ptr<OdpRegistrar>* out,
                    std::string* note);
  ~OdpRegistrar();
  OdpRegistrar(const OdpRegistrar&) = delete;
  OdpRegistrar& operator=(const OdpRegistrar&) = delete;

  // The C registrar (name "ibverbs-odp", ctx = this). Valid while this lives.
  regcache_registrar registrar();

  bool implicit_mode() const { return implicit_mr_ != nullptr; }
  const ibv_mr* implicit_mr() const { return implicit_mr_; }
  // regcache_access bits of the implicit MR (0 in explicit mode).
  uint32_t implicit_access() const { return implicit_access_; }
  const OdpCaps& caps() const { return caps_; }

  // ibv_advise_mr() over [addr, addr + length) of the MR with `lkey`:
  // PREFETCH_WRITE if `access` is writable, else PREFETCH; FLUSH if `sync`.
  // Returns 0 or -errno (the message set).
  int Prefetch(uint32_t lkey, uint64_t addr, size_t length, uint32_t access,
               bool sync);

  uint64_t prefetches() const { return prefetches_.load(); }
  uint64_t prefetch_errors() const { return prefetch_errors_.load(); }

 private:
  OdpRegistrar() = default;
  static int Reg(void* ctx, void* addr, size_t length, uint32_t access,
                 regcache_mr* out);
  static int Dereg(void* ctx, regcache_mr* mr);
  // Prefetch() without the message; *advice_name names the advice on error.
  int Advise(uint32_t lkey, uint64_t addr, size_t length, uint32_t access,
             bool sync, const char** advice_name);
  int PrefetchAfterReg(uint32_t lkey, void* addr, size_t length,
                       uint32_t access);

  ibv_pd* pd_ = nullptr;
  VerbsOps ops_{};
  OdpCaps caps_;
  OdpOptions options_;
  ibv_mr* implicit_mr_ = nullptr;
  uint32_t implicit_access_ = 0;
  pid_t creator_pid_ = 0;
  // Set when the device answered EOPNOTSUPP: asynchronous prefetches stop.
  std::atomic<bool> advise_unsupported_{false};
  std::atomic<uint64_t> prefetches_{0}, prefetch_errors_{0};
};

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_ODP_ODP_REGISTRAR_H_
