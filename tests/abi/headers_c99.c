/* SPDX-License-Identifier: BSD-2-Clause */
/* Built with -std=c99 -pedantic -Werror: the public C headers are C99. */
#include <regcache/ibverbs.h>
#include <regcache/kmod_uapi.h>
#include <regcache/regcache.h>
#ifdef REGCACHE_TEST_WITH_LIBFABRIC
#include <regcache/libfabric.h>
#endif

int regcache_headers_c99_check(void);
int regcache_headers_c99_check(void) {
  struct regcache_config config;
  return regcache_config_init(&config);
}
