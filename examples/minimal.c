/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * minimal: the smallest regcache program. It uses the fake registrar, which
 * registers nothing, so it runs on any Linux host without an RDMA device.
 * The first get of a buffer registers it (a miss); the second is served
 * from the cache (a hit: the same keys); after the buffer is unmapped and
 * memory is mapped again at the same address, the next get registers anew,
 * because the monitor (userfaultfd, or the regcache kernel module) saw the
 * munmap().
 *
 * Build:
 *   cc -o minimal minimal.c $(pkg-config --cflags --libs regcache)
 * Exit status: 0 when the cache behaved as described, 1 otherwise.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */

#include <regcache/regcache.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define LEN (1u << 20)

static int fail(const char *what) {
  fprintf(stderr, "minimal: %s: %s\n", what, regcache_last_error());
  return 1;
}

static char *map(void *where) {
  char *p = mmap(where, LEN, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  memset(p, 1, LEN);
  return p;
}

/* Gets and puts [buf, buf + LEN); returns the registration's lkey, or 0. */
static uint32_t get_and_put(regcache_t *cache, char *buf) {
  regcache_handle_t *h;
  if (regcache_get(cache, buf, LEN, REGCACHE_ACCESS_LOCAL_WRITE, &h) != 0)
    return 0;
  uint32_t lkey = regcache_handle_mr(h)->lkey;
  regcache_put(cache, h);
  return lkey;
}

int main(void) {
  struct regcache_registrar reg;
  regcache_registrar_fake(0, &reg);
  regcache_t *cache;
  if (regcache_create(&reg, NULL, &cache) != 0) /* defaults + environment */
    return fail("regcache_create");

  char *buf = map(NULL);
  if (buf == NULL) return fail("mmap");
  uint32_t first = get_and_put(cache, buf);  /* a miss: registers */
  uint32_t second = get_and_put(cache, buf); /* a hit: the same lkey */
  munmap(buf, LEN);
  char *again = map(buf);                     /* usually at the same address */
  uint32_t third = get_and_put(cache, again); /* a miss: registers anew */

  struct regcache_stats stats;
  regcache_stats(cache, &stats);
  printf(
      "monitor %s: lkey %u, %u, then %u after munmap (%s address); "
      "hits %llu, misses %llu, invalidated by munmap %llu\n",
      regcache_monitor_name(stats.monitor), first, second, third,
      again == buf ? "same" : "another", (unsigned long long)stats.hits,
      (unsigned long long)stats.misses,
      (unsigned long long)stats.invalidations[REGCACHE_INVAL_UNMAP]);
  int ok = first != 0 && second == first && third != 0 && third != first &&
           stats.hits == 1 && stats.misses == 2 &&
           stats.invalidations[REGCACHE_INVAL_UNMAP] == 1;
  munmap(again, LEN);
  if (regcache_destroy(cache) != 0) return fail("regcache_destroy");
  return ok ? 0 : 1;
}
