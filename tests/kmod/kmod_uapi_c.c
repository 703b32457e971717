/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * include/regcache/kmod_uapi.h compiled as C (the C++ test includes it
 * too): the layout the module and both languages must agree on.
 */
#include <stddef.h>

#include <regcache/kmod_uapi.h>

_Static_assert(sizeof(struct regcache_kmod_shared) == 192, "shared header");
_Static_assert(offsetof(struct regcache_kmod_shared, inval_seq) == 64,
               "inval_seq has its own cache line");
_Static_assert(offsetof(struct regcache_kmod_shared, ring_head) == 128,
               "ring_head has its own cache line");
_Static_assert(sizeof(struct regcache_kmod_event) == 32, "event");
_Static_assert(sizeof(struct regcache_kmod_range) == 40, "range");
_Static_assert(sizeof(struct regcache_kmod_monitor_batch) == 16, "batch");
_Static_assert(sizeof(struct regcache_kmod_unmonitor) == 16, "unmonitor");
_Static_assert(sizeof(struct regcache_kmod_ack) == 16, "ack");
_Static_assert(sizeof(struct regcache_kmod_stats) == 208, "stats");

/* Called by the C++ test so this file is linked, not just compiled. */
unsigned long regcache_kmod_uapi_c_monitor_cmd(void) {
  return REGCACHE_IOC_MONITOR;
}
