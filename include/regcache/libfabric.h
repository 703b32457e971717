/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * regcache/libfabric.h: a registrar backed by libfabric.
 *
 * regcache_registrar_libfabric() fills a struct regcache_registrar whose reg
 * calls fi_mr_reg() on a domain and whose dereg calls fi_close() on the
 * memory region. A registration's regcache_mr.key is fi_mr_key(),
 * regcache_mr.desc is fi_mr_desc() (pass it as the local descriptor in data
 * transfers on FI_MR_LOCAL domains) and regcache_mr.backend is the
 * struct fid_mr *.
 *
 * Access
 *   The buffer may always be a local source (FI_SEND | FI_WRITE).
 *   REGCACHE_ACCESS_LOCAL_WRITE adds FI_RECV | FI_READ (receive buffer, RMA
 *   read and fetching-atomic result buffer); _REMOTE_WRITE adds
 *   FI_REMOTE_WRITE; _REMOTE_READ adds FI_REMOTE_READ; _REMOTE_ATOMIC adds
 *   both remote flags, since a fetching atomic reads and writes the target,
 *   and the registration reports REMOTE_READ | REMOTE_WRITE as granted in
 *   regcache_mr.access.
 *
 * Keys
 *   On FI_MR_PROV_KEY domains the provider chooses the key. On the others
 *   the registrar requests keys from one process-global counter (1, 2, ...),
 *   retrying with the next value if the domain reports the key in use, so
 *   keys stay unique however many caches share a domain. The counter is
 *   64-bit and is not reduced to the domain's mr_key_size.
 *
 * Provider MR caches
 *   Some providers (verbs, efa) keep an MR cache of their own: overlapping
 *   registrations may then share one key, and two caches stack. With regcache
 *   in front, turn the provider's off (FI_MR_CACHE_MAX_COUNT=0 in the
 *   environment before fi_getinfo()).
 *
 * Addresses
 *   Registrations start at offset 0 at regcache_mr.addr (the page-rounded
 *   start). On domains without FI_MR_VIRT_ADDR a peer therefore addresses
 *   byte p of the registration as (p - regcache_mr.addr), not as p.
 *
 * Unsupported domains
 *   Domains whose mr_mode has FI_MR_ENDPOINT (a region must be bound to an
 *   endpoint and enabled before use; the cache cannot know the endpoint) or
 *   FI_MR_RAW (keys larger than 64 bits) are refused with -EOPNOTSUPP.
 *
 * Thread safety
 *   The registrar's reg and dereg may be called concurrently from any number
 *   of threads. The domain must allow that: open it with a threading model
 *   other than FI_THREAD_DOMAIN/FI_THREAD_COMPLETION, or serialise the
 *   caches using it yourself.
 *
 * Lifetime
 *   The registrar holds `domain` without a reference: the domain (and its
 *   fabric) must outlive every cache using the registrar, i.e. destroy the
 *   caches before fi_close() on the domain. The registrar itself owns
 *   nothing and needs no cleanup.
 */
#ifndef REGCACHE_LIBFABRIC_H_
#define REGCACHE_LIBFABRIC_H_

#include <stdint.h>

#include "regcache/regcache.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; only this API is exported. */
#pragma GCC visibility push(default)

struct fid_domain;

/* Fill `out` with the libfabric registrar for `domain` (name "libfabric").
 * `mr_mode` is the domain's info->domain_attr->mr_mode as returned by
 * fi_getinfo() (the registrar cannot read it from the fid_domain).
 * Returns 0; -EINVAL if `domain` or `out` is NULL; -EOPNOTSUPP if mr_mode
 * has FI_MR_ENDPOINT or FI_MR_RAW (regcache_last_error() says which).
 * Its reg returns fi_mr_reg()'s negative error code (fi_strerror() decodes
 * it; codes below 256 are errno values) and -EINVAL for unknown access
 * bits; its dereg returns fi_close()'s. */
int regcache_registrar_libfabric(struct fid_domain *domain, uint64_t mr_mode,
                                 struct regcache_registrar *out);

#pragma GCC visibility pop

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* REGCACHE_LIBFABRIC_H_ */
