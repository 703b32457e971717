// SPDX-License-Identifier: BSD-2-Clause
// The libfabric registrar: regcache_registrar_libfabric().
//
// reg is fi_mr_reg() on the domain kept in the registrar's ctx; dereg is
// fi_close() on the struct fid_mr * kept in regcache_mr.backend. Besides the
// access mapping, the registrar supplies requested keys for domains that
// take user keys; it passes one on FI_MR_PROV_KEY domains too, where the
// provider ignores it, so the ctx needs nothing but the domain.
#include <errno.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>

#include <atomic>
#include <cstdint>

#include "base/errors.h"
#include "regcache/libfabric.h"
#include "regcache/regcache.h"

namespace regcache_internal {
namespace {

// Next requested key. Process-global so that two caches (or registrars) on
// one domain never ask for the same key. Starts at 1 to keep 0 free for
// applications that register a single region with key 0.
std::atomic<uint64_t> g_next_requested_key{1};

// How many successive keys to try when the domain says a key is taken (by a
// registration the application made itself with that key).
constexpr int kKeyAttempts = 16;

int LibfabricReg(void* ctx, void* addr, size_t length, uint32_t access,
                 regcache_mr* out) {
  if ((access & ~static_cast<uint32_t>(REGCACHE_ACCESS_ALL)) != 0)
    return -EINVAL;
  if (access & REGCACHE_ACCESS_REMOTE_ATOMIC) {
    access |= REGCACHE_ACCESS_REMOTE_READ | REGCACHE_ACCESS_REMOTE_WRITE;
  }

  // Reading local memory is always allowed, as in verbs.
  uint64_t fi_access = FI_SEND | FI_WRITE;
  if (access & REGCACHE_ACCESS_LOCAL_WRITE) fi_access |= FI_RECV | FI_READ;
  if (access & REGCACHE_ACCESS_REMOTE_WRITE) fi_access |= FI_REMOTE_WRITE;
  if (access & REGCACHE_ACCESS_REMOTE_READ) fi_access |= FI_REMOTE_READ;

  auto* domain = static_cast<fid_domain*>(ctx);
  fid_mr* mr = nullptr;
  int ret = -FI_ENOKEY;
  for (int attempt = 0; attempt < kKeyAttempts && ret == -FI_ENOKEY;
       ++attempt) {
    const uint64_t requested_key =
        g_next_requested_key.fetch_add(1, std::memory_order_relaxed);
    ret =
        fi_mr_reg(domain, addr, length, fi_access, /*offset=*/0, requested_key,
                  /*flags=*/0, &mr, /*context=*/nullptr);
  }
  if (ret != 0) return ret < 0 ? ret : -ret;
  if (mr == nullptr) return -EIO;

  // The cache set out->access to the requested bits before this call and
  // accepts a superset written back: report what was really granted.
  out->access = access;
  out->lkey = 0;
  out->rkey = 0;
  out->key = fi_mr_key(mr);
  out->desc = fi_mr_desc(mr);
  out->backend = mr;
  return 0;
}

int LibfabricDereg(void* ctx, regcache_mr* mr) {
  if (mr == nullptr || mr->backend == nullptr) return -EINVAL;
  const int ret = fi_close(&static_cast<fid_mr*>(mr->backend)->fid);
  if (ret != 0) return ret < 0 ? ret : -ret;
  mr->backend = nullptr;
  return 0;
}

}  // namespace
}  // namespace regcache_internal

extern "C" int regcache_registrar_libfabric(struct fid_domain* domain,
                                            uint64_t mr_mode,
                                            struct regcache_registrar* out) {
  using namespace regcache_internal;
  if (domain == nullptr || out == nullptr) {
    return SetError(-EINVAL, "regcache_registrar_libfabric: %s is NULL",
                    domain == nullptr ? "domain" : "out");
  }
  if (mr_mode & FI_MR_ENDPOINT) {
    return SetError(-EOPNOTSUPP,
                    "regcache_registrar_libfabric: the domain's mr_mode has "
                    "FI_MR_ENDPOINT (each region must be bound to an endpoint "
                    "before use); a cache shared by endpoints cannot do that, "
                    "so this provider is not supported");
  }
  if (mr_mode & FI_MR_RAW) {
    return SetError(-EOPNOTSUPP,
                    "regcache_registrar_libfabric: the domain's mr_mode has "
                    "FI_MR_RAW (keys longer than 64 bits), which "
                    "regcache_mr.key cannot hold");
  }
  *out = regcache_registrar{"libfabric", LibfabricReg, LibfabricDereg, domain};
  return 0;
}
