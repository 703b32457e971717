// SPDX-License-Identifier: BSD-2-Clause
// The mapping between regcache and verbs that both ibverbs registrars share:
// the pinning one (registrar/ibverbs.cc) and the on-demand one
// (src/odp/odp_registrar.cc). Header-only, no state.
#ifndef REGCACHE_SRC_REGCACHE_REGISTRAR_VERBS_ACCESS_H_
#define REGCACHE_SRC_REGCACHE_REGISTRAR_VERBS_ACCESS_H_

#include <infiniband/verbs.h>

#include <cstdint>

#include "regcache/regcache.h"

namespace regcache_internal {

// Verbs rejects IBV_ACCESS_REMOTE_WRITE and IBV_ACCESS_REMOTE_ATOMIC without
// IBV_ACCESS_LOCAL_WRITE (the kernel's ib_check_mr_access()), so those imply
// REGCACHE_ACCESS_LOCAL_WRITE. The result is what a registration grants.
inline uint32_t WidenForVerbs(uint32_t access) {
  if (access & (REGCACHE_ACCESS_REMOTE_WRITE | REGCACHE_ACCESS_REMOTE_ATOMIC))
    access |= REGCACHE_ACCESS_LOCAL_WRITE;
  return access;
}

// REGCACHE_ACCESS_* (already widened) -> IBV_ACCESS_* (without ON_DEMAND).
inline int IbvAccessOf(uint32_t widened) {
  int ibv = 0;
  if (widened & REGCACHE_ACCESS_LOCAL_WRITE) ibv |= IBV_ACCESS_LOCAL_WRITE;
  if (widened & REGCACHE_ACCESS_REMOTE_WRITE) ibv |= IBV_ACCESS_REMOTE_WRITE;
  if (widened & REGCACHE_ACCESS_REMOTE_READ) ibv |= IBV_ACCESS_REMOTE_READ;
  if (widened & REGCACHE_ACCESS_REMOTE_ATOMIC) ibv |= IBV_ACCESS_REMOTE_ATOMIC;
  return ibv;
}

// What a registrar reports for `mr` granting `access`: its keys, and the
// ibv_mr itself as the backend object.
inline void FillFromIbvMr(ibv_mr* mr, uint32_t access, regcache_mr* out) {
  out->access = access;
  out->lkey = mr->lkey;
  out->rkey = mr->rkey;
  out->key = 0;
  out->desc = nullptr;
  out->backend = mr;
}

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_REGISTRAR_VERBS_ACCESS_H_
