/* SPDX-License-Identifier: BSD-2-Clause */
/* A C program outside the tree that uses an installed regcache. */
#include <regcache/regcache.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  struct regcache_registrar reg;
  struct regcache_config cfg;
  regcache_t *cache;
  regcache_handle_t *h;
  struct regcache_stats s;
  static char buf[1 << 16];
  int i;

  if (regcache_registrar_fake(0, &reg) != 0 || regcache_config_init(&cfg) != 0)
    return 1;
  cfg.monitor = REGCACHE_MONITOR_NONE;
  if (regcache_create(&reg, &cfg, &cache) != 0) {
    fprintf(stderr, "%s\n", regcache_last_error());
    return 1;
  }
  for (i = 0; i < 2; ++i) {
    if (regcache_get(cache, buf, sizeof buf, REGCACHE_ACCESS_LOCAL_WRITE, &h) !=
        0)
      return 1;
    regcache_put(cache, h);
  }
  if (regcache_stats(cache, &s) != 0) return 1;
  printf("c consumer: hits=%llu misses=%llu\n", (unsigned long long)s.hits,
         (unsigned long long)s.misses);
  regcache_destroy(cache);
  return s.hits == 1 && s.misses == 1 ? 0 : 1;
}
