/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ibverbs: regcache in front of ibv_reg_mr(), as an RDMA program uses it.
 * It opens an RDMA device (the first, or the one named on the command
 * line), allocates a protection domain, and creates a cache whose
 * registrar calls ibv_reg_mr() on that PD. Then, for one buffer:
 *   - the first get registers it (a miss);
 *   - a get after the put is served from the cache (a hit: the same lkey
 *     and rkey, no ibv_reg_mr());
 *   - after the buffer is unmapped and memory is mapped again at the same
 *     address, the next get registers the NEW pages, because the monitor
 *     saw the munmap(); the old registration would make the NIC read and
 *     write the old pages.
 * Between get and put the registration's lkey/rkey may be used in work
 * requests; put it once they have completed.
 *
 * Build:
 *   cc -o ibverbs ibverbs.c $(pkg-config --cflags --libs regcache) -libverbs
 * Usage: ibverbs [DEVICE]
 * Exit status: 0 when the cache behaved as described, 1 otherwise, 2 when
 * there is no RDMA device.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */

#include <infiniband/verbs.h>
#include <regcache/ibverbs.h>
#include <regcache/regcache.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define LEN (64u << 10)

/* Maps LEN bytes (at `where` if the kernel agrees) and touches them. */
static char *map(void *where) {
  char *p = mmap(where, LEN, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  memset(p, 1, LEN);
  return p;
}

/* One registration of [buf, buf + LEN) from the cache, used and released.
 * Returns 0 and the keys it had, or a negative errno. */
static int use_buffer(regcache_t *cache, char *buf, uint32_t *lkey,
                      uint32_t *rkey) {
  regcache_handle_t *h;
  int rc = regcache_get(
      cache, buf, LEN,
      REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_WRITE, &h);
  if (rc != 0) {
    fprintf(stderr, "regcache_get: %s\n", regcache_last_error());
    return rc;
  }
  const struct regcache_mr *mr = regcache_handle_mr(h);
  *lkey = mr->lkey; /* post work requests with mr->lkey / mr->rkey ... */
  *rkey = mr->rkey;
  return regcache_put(cache, h); /* ... and put once they have completed */
}

int main(int argc, char **argv) {
  struct ibv_device **devices = ibv_get_device_list(NULL);
  struct ibv_device *device = NULL;
  for (int i = 0; devices != NULL && devices[i] != NULL; i++) {
    if (argc < 2 || strcmp(ibv_get_device_name(devices[i]), argv[1]) == 0) {
      device = devices[i];
      break;
    }
  }
  if (device == NULL) {
    fprintf(stderr, "ibverbs: no RDMA device%s%s\n", argc > 1 ? " " : "",
            argc > 1 ? argv[1] : "");
    return 2;
  }
  struct ibv_context *context = ibv_open_device(device);
  struct ibv_pd *pd = context != NULL ? ibv_alloc_pd(context) : NULL;
  if (pd == NULL) {
    perror("ibverbs: ibv_open_device/ibv_alloc_pd");
    return 1;
  }

  struct regcache_registrar reg;
  regcache_registrar_ibverbs(pd, &reg);
  regcache_t *cache;
  if (regcache_create(&reg, NULL, &cache)) { /* defaults + environment */
    fprintf(stderr, "regcache_create: %s\n", regcache_last_error());
    return 1;
  }

  char *buf = map(NULL), *again = NULL;
  uint32_t lkey[3] = {0}, rkey[3] = {0};
  int rc = buf == NULL ? -1 : use_buffer(cache, buf, &lkey[0], &rkey[0]);
  if (rc == 0) rc = use_buffer(cache, buf, &lkey[1], &rkey[1]);
  if (rc == 0) {
    munmap(buf, LEN);
    again = map(buf); /* usually at the same address */
    rc = again == NULL ? -1 : use_buffer(cache, again, &lkey[2], &rkey[2]);
  }

  struct regcache_stats stats;
  regcache_stats(cache, &stats);
  printf(
      "%s, monitor %s: lkey 0x%x, 0x%x, then 0x%x after munmap (%s address); "
      "ibv_reg_mr calls %llu, hits %llu, invalidated by munmap %llu\n",
      ibv_get_device_name(device), regcache_monitor_name(stats.monitor),
      lkey[0], lkey[1], lkey[2], again == buf ? "same" : "another",
      (unsigned long long)stats.registrations, (unsigned long long)stats.hits,
      (unsigned long long)stats.invalidations[REGCACHE_INVAL_UNMAP]);
  int ok = rc == 0 && lkey[1] == lkey[0] && rkey[1] == rkey[0] &&
           stats.registrations == 2 && stats.hits == 1 &&
           stats.invalidations[REGCACHE_INVAL_UNMAP] == 1;
  if (again != NULL) munmap(again, LEN);

  regcache_destroy(cache); /* before the PD it registers on */
  ibv_dealloc_pd(pd);
  ibv_close_device(context);
  ibv_free_device_list(devices);
  return ok ? 0 : 1;
}
