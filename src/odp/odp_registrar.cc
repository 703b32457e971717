// SPDX-License-Identifier: BSD-2-Clause
// The ODP registrar: explicit ODP MRs or one implicit MR, and prefetch with
// ibv_advise_mr(). See odp_registrar.h for the contract.
#include "odp/odp_registrar.h"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstring>

#include "base/errors.h"
#include "registrar/verbs_access.h"

namespace regcache_internal {
namespace {

// ibv_sge.length is 32 bits: longer ranges are advised in chunks.
constexpr uint64_t kAdviseChunk = uint64_t{1} << 30;
constexpr uint32_t kAdviseMaxSge = 16;

constexpr uint32_t kWritable =
    REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_WRITE;

int NegErrno(int ret) { return ret > 0 ? -ret : (ret < 0 ? ret : -EIO); }

}  // namespace

int OdpRegistrar::Create(ibv_pd* pd, const OdpCaps& caps,
                         const OdpOptions& options, const VerbsOps& ops,
                         std::unique_ptr<OdpRegistrar>* out,
                         std::string* note) {
  note->clear();
  if (pd == nullptr) {
    *note = "no protection domain";
    return -EINVAL;
  }
  if (!caps.supported()) {
    *note = DescribeOdp(caps);
    return -EOPNOTSUPP;
  }
  std::unique_ptr<OdpRegistrar> r(new OdpRegistrar());
  r->pd_ = pd;
  r->ops_ = ops;
  r->caps_ = caps;
  r->options_ = options;
  r->creator_pid_ = getpid();
  if (options.implicit && caps.implicit()) {
    // The implicit MR carries every right the device's RC ODP covers.
    uint32_t access = 0;
    for (uint32_t bit = 1; bit <= REGCACHE_ACCESS_REMOTE_ATOMIC; bit <<= 1) {
      const uint32_t a = WidenForVerbs(bit);
      if (OdpCovers(caps, OdpTransport::kRc, a, nullptr)) access |= a;
    }
    errno = 0;
    ibv_mr* mr = ops.reg_mr(ops.self, pd, nullptr, SIZE_MAX,
                            IBV_ACCESS_ON_DEMAND | IbvAccessOf(access));
    if (mr != nullptr) {
      r->implicit_mr_ = mr;
      r->implicit_access_ = access;
    } else {
      const int err = errno != 0 ? errno : EIO;
      *note = caps.device + ": implicit ODP MR refused (" + strerror(err) +
              "); using explicit ODP MRs";
    }
  } else if (options.implicit) {
    *note = caps.device +
            ": no implicit ODP (IBV_ODP_SUPPORT_IMPLICIT unset); "
            "using explicit ODP MRs";
  }
  *out = std::move(r);
  return 0;
}

OdpRegistrar::~OdpRegistrar() {
  // In a fork child the implicit MR is the parent's: deregistering it through
  // the inherited device fd would destroy the parent's MR.
  if (implicit_mr_ != nullptr && getpid() == creator_pid_)
    ops_.dereg_mr(ops_.self, implicit_mr_);
}

regcache_registrar OdpRegistrar::registrar() {
  return regcache_registrar{"ibverbs-odp", &OdpRegistrar::Reg,
                            &OdpRegistrar::Dereg, this};
}

int OdpRegistrar::Advise(uint32_t lkey, uint64_t addr, size_t length,
                         uint32_t access, bool sync, const char** advice_name) {
  const auto advice = (WidenForVerbs(access) & kWritable) != 0
                          ? IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE
                          : IBV_ADVISE_MR_ADVICE_PREFETCH;
  const uint32_t flags = sync ? IBV_ADVISE_MR_FLAG_FLUSH : 0;
  uint64_t next = addr;
  uint64_t left = length;
  while (left != 0) {
    ibv_sge sge[kAdviseMaxSge];
    uint32_t n = 0;
    for (; n < kAdviseMaxSge && left != 0; ++n) {
      const uint64_t chunk = left < kAdviseChunk ? left : kAdviseChunk;
      sge[n] = ibv_sge{next, uint32_t(chunk), lkey};
      next += chunk;
      left -= chunk;
    }
    prefetches_.fetch_add(1, std::memory_order_relaxed);
    const int ret = ops_.advise_mr(ops_.self, pd_, advice, flags, sge, n);
    if (ret != 0) {
      prefetch_errors_.fetch_add(1, std::memory_order_relaxed);
      const int rc = NegErrno(ret);
      if (rc == -EOPNOTSUPP) advise_unsupported_.store(true);
      *advice_name = advice == IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE
                         ? (sync ? "PREFETCH_WRITE, FLUSH" : "PREFETCH_WRITE")
                         : (sync ? "PREFETCH, FLUSH" : "PREFETCH");
      return rc;
    }
  }
  return 0;
}

int OdpRegistrar::Prefetch(uint32_t lkey, uint64_t addr, size_t length,
                           uint32_t access, bool sync) {
  const char* advice = "";
  const int rc = Advise(lkey, addr, length, access, sync, &advice);
  if (rc == 0) return 0;
  return SetError(rc,
                  "ibv_advise_mr(%s) on %s over %zu bytes at 0x%" PRIx64 ": %s",
                  advice, caps_.device.c_str(), length, addr, strerror(-rc));
}

int OdpRegistrar::PrefetchAfterReg(uint32_t lkey, void* addr, size_t length,
                                   uint32_t access) {
  switch (options_.prefetch) {
    case OdpPrefetch::kNone:
      return 0;
    case OdpPrefetch::kAsync:
      // Advice only: a failure costs the first access a device page fault,
      // and is counted (prefetch_errors()) without touching the message of
      // a get that succeeds.
      if (!advise_unsupported_.load(std::memory_order_relaxed)) {
        const char* advice;
        Advise(lkey, reinterpret_cast<uintptr_t>(addr), length, access, false,
               &advice);
      }
      return 0;
    case OdpPrefetch::kSync:
      // Asked for resident pages before first use: a failure is the get's.
      return Prefetch(lkey, reinterpret_cast<uintptr_t>(addr), length, access,
                      true);
  }
  return 0;
}

int OdpRegistrar::Reg(void* ctx, void* addr, size_t length, uint32_t access,
                      regcache_mr* out) {
  auto* self = static_cast<OdpRegistrar*>(ctx);
  if ((access & ~uint32_t(REGCACHE_ACCESS_ALL)) != 0 || length == 0)
    return SetError(-EINVAL,
                    "ibverbs-odp: bad request (access 0x%x, length %zu)",
                    access, length);
  const uint32_t widened = WidenForVerbs(access);
  std::string why;
  if (!OdpCovers(self->caps_, OdpTransport::kRc, widened, &why)) {
    return SetError(
        -EOPNOTSUPP,
        "ibverbs-odp: %s; not registered (a pinned MR would go "
        "stale in a cache without a monitor; use REGCACHE_MODE=pin)",
        why.c_str());
  }

  if (self->implicit_mr_ != nullptr) {
    // Covered by OdpCovers, so a subset of the implicit MR's rights.
    FillFromIbvMr(self->implicit_mr_, self->implicit_access_, out);
    return self->PrefetchAfterReg(out->lkey, addr, length, widened);
  }

  errno = 0;
  ibv_mr* mr = self->ops_.reg_mr(self->ops_.self, self->pd_, addr, length,
                                 IBV_ACCESS_ON_DEMAND | IbvAccessOf(widened));
  if (mr == nullptr) {
    const int rc = errno != 0 ? -errno : -EIO;
    return SetError(rc,
                    "ibverbs-odp: ibv_reg_mr(ON_DEMAND) of %zu bytes on %s: %s",
                    length, self->caps_.device.c_str(), strerror(-rc));
  }
  const int rc = self->PrefetchAfterReg(mr->lkey, addr, length, widened);
  if (rc != 0) {
    self->ops_.dereg_mr(self->ops_.self, mr);
    return rc;
  }
  FillFromIbvMr(mr, widened, out);
  return 0;
}

int OdpRegistrar::Dereg(void* ctx, regcache_mr* mr) {
  auto* self = static_cast<OdpRegistrar*>(ctx);
  if (mr == nullptr || mr->backend == nullptr) return -EINVAL;
  if (mr->backend == self->implicit_mr_) {  // shared: lives with the registrar
    mr->backend = nullptr;
    return 0;
  }
  const int ret =
      self->ops_.dereg_mr(self->ops_.self, static_cast<ibv_mr*>(mr->backend));
  if (ret != 0) return NegErrno(ret);
  mr->backend = nullptr;
  return 0;
}

}  // namespace regcache_internal
