/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * regcache/ibverbs.h: a registrar backed by libibverbs.
 *
 * regcache_registrar_ibverbs() fills a struct regcache_registrar whose reg
 * calls ibv_reg_mr() on a protection domain and whose dereg calls
 * ibv_dereg_mr(). A registration's lkey and rkey are the ibv_mr's, and
 * regcache_mr.backend is the struct ibv_mr *.
 *
 * Access
 *   Verbs refuses remote write or remote atomic access without local write,
 *   so a request with REGCACHE_ACCESS_REMOTE_WRITE or _REMOTE_ATOMIC is
 *   registered with REGCACHE_ACCESS_LOCAL_WRITE added, and the widened set is
 *   reported in regcache_mr.access (later requests for local write then hit).
 *
 * Thread safety
 *   The registrar's reg and dereg may be called concurrently from any number
 *   of threads, as ibv_reg_mr() and ibv_dereg_mr() may.
 *
 * Lifetime
 *   The registrar holds `pd` without a reference: the protection domain (and
 *   its device context) must outlive every cache using the registrar, i.e.
 *   destroy the caches before ibv_dealloc_pd(). The registrar itself owns
 *   nothing and needs no cleanup.
 */
#ifndef REGCACHE_IBVERBS_H_
#define REGCACHE_IBVERBS_H_

#include "regcache/regcache.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; only this API is exported. */
#pragma GCC visibility push(default)

struct ibv_pd;

/* Fill `out` with the ibverbs registrar for `pd` (name "ibverbs").
 * Returns 0, or -EINVAL if `pd` or `out` is NULL.
 * Its reg returns the negative errno ibv_reg_mr() set (-EFAULT for memory
 * that is not mapped, -ENOMEM/-EAGAIN when RLIMIT_MEMLOCK or the device's
 * MR resources are exhausted, -EIO if ibv_reg_mr() failed without setting
 * errno) and -EINVAL for unknown access bits. */
int regcache_registrar_ibverbs(struct ibv_pd *pd,
                               struct regcache_registrar *out);

#pragma GCC visibility pop

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* REGCACHE_IBVERBS_H_ */
