/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * regcache: a memory registration cache for RDMA.
 *
 * This header is the C API. It defines the cache object, the registration
 * handle returned by regcache_get(), the pluggable registrar (what actually
 * registers memory: ibv_reg_mr, fi_mr_reg, a user callback) and the cache
 * configuration. Backend-specific registrars live in regcache/ibverbs.h and
 * regcache/libfabric.h; a C++ RAII layer lives in regcache/regcache.hpp.
 *
 * Thread safety
 *   Every function taking a regcache_t may be called from any number of
 *   threads at once, except regcache_destroy(), which must not race with any
 *   other call on the same cache. regcache_get() on a cached range (a hit)
 *   takes no process-wide lock and makes no system call. A handle may be
 *   released by a thread other than the one that obtained it.
 *
 * Lifetime
 *   A handle returned by regcache_get() holds a reference: the registration
 *   it names stays registered (its lkey/rkey/fid_mr stay valid for the device)
 *   until regcache_put(). If the memory is unmapped or remapped while the
 *   handle is held, the registration is removed from the cache at once (no
 *   later regcache_get() returns it) but it is deregistered only at the last
 *   regcache_put(); RDMA through it meanwhile reaches the OLD pages, which is
 *   the caller's bug, exactly as with a plain ibv_reg_mr. After
 *   regcache_put() the handle and the regcache_mr it points to must not be
 *   used.
 *
 * Errors
 *   Functions return 0 or a negative errno value. The calling thread's last
 *   error message (which limit was hit, what was wrong with an argument) is
 *   available from regcache_last_error(). Nothing in this API aborts on bad
 *   input.
 *
 * Compatibility
 *   libregcache.so.0 keeps its ABI within major version 0: struct
 *   regcache_config and struct regcache_stats may grow at their end. The
 *   functions that take them are inline wrappers that pass the size the
 *   caller was compiled with to an exported *_sz function, as libibverbs'
 *   ibv_query_device_ex() does: a newer library never reads or writes past
 *   the caller's struct (fields it lacks take their defaults), and an older
 *   library refuses a larger struct with -EINVAL unless the fields it does
 *   not know are zero. Call the wrappers, not the *_sz functions. The
 *   header is C99 and C++11 (regcache.hpp too).
 */
#ifndef REGCACHE_REGCACHE_H_
#define REGCACHE_REGCACHE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; only this API is exported. */
#pragma GCC visibility push(default)

#define REGCACHE_VERSION_MAJOR 0
#define REGCACHE_VERSION_MINOR 1

typedef struct regcache_cache regcache_t;

/* Access rights of a registration. A cached registration whose access is a
 * superset of the requested access satisfies the request. */
enum regcache_access {
  REGCACHE_ACCESS_LOCAL_WRITE = 1u << 0,
  REGCACHE_ACCESS_REMOTE_WRITE = 1u << 1,
  REGCACHE_ACCESS_REMOTE_READ = 1u << 2,
  REGCACHE_ACCESS_REMOTE_ATOMIC = 1u << 3,
};
#define REGCACHE_ACCESS_ALL                                     \
  (REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_WRITE | \
   REGCACHE_ACCESS_REMOTE_READ | REGCACHE_ACCESS_REMOTE_ATOMIC)

/* What one registration is, as the backend made it. Filled by the
 * registrar; read-only to everyone else. The range is the page-rounded range
 * actually registered, which covers the requested one. */
struct regcache_mr {
  void *addr;      /* first byte registered */
  size_t length;   /* bytes registered */
  uint32_t access; /* regcache_access bits */
  uint32_t lkey;   /* ibverbs lkey (0 for backends without one) */
  uint32_t rkey;   /* ibverbs rkey (0 for backends without one) */
  uint64_t key;    /* libfabric fi_mr_key() (0 for backends without one) */
  void *desc;      /* libfabric fi_mr_desc() (NULL for other backends) */
  void *backend;   /* struct ibv_mr *, struct fid_mr *, or the callback's */
};

/* A registrar turns memory into a registration and back. Both callbacks are
 * called without any cache lock held and never from a monitor's event
 * thread, so they may allocate, free and make system calls.
 *   reg:   register [addr, addr + length) with at least `access`; fill
 *          out->lkey/rkey/key/desc/backend (the cache fills addr, length,
 *          access). Return 0 or a negative errno; -ENOMEM and -EAGAIN mean
 *          "out of pinnable memory" and make the cache evict and retry.
 *   dereg: undo reg. Return 0 or a negative errno (which is counted, and
 *          reported through regcache_last_error(), but cannot be undone).
 * `ctx` is passed through untouched. The registrar must outlive the cache.
 */
struct regcache_registrar {
  const char *name; /* for messages and statistics, e.g. "ibverbs" */
  int (*reg)(void *ctx, void *addr, size_t length, uint32_t access,
             struct regcache_mr *out);
  int (*dereg)(void *ctx, struct regcache_mr *mr);
  void *ctx;
};

/* A fake registrar for tests and benchmarks: it registers nothing, hands out
 * increasing keys and, with `lock_memory` set, mlock()s the range so that
 * RLIMIT_MEMLOCK behaves as it does for ibv_reg_mr. Not for production. */
int regcache_registrar_fake(int lock_memory, struct regcache_registrar *out);

/* How the cache learns that memory was unmapped or remapped. */
enum regcache_monitor_kind {
  REGCACHE_MONITOR_AUTO = 0, /* kmod, else uffd, else none */
  REGCACHE_MONITOR_NONE,     /* only regcache_invalidate() invalidates */
  REGCACHE_MONITOR_UFFD,     /* userfaultfd non-cooperative events */
  REGCACHE_MONITOR_KMOD,     /* the regcache kernel module (/dev/regcache) */
};

/* How registrations stay correct when memory is unmapped (docs/odp.md).
 * Only the ibverbs registrar can use on-demand paging (ODP). */
enum regcache_mode {
  REGCACHE_MODE_AUTO = 0, /* ODP if the device's ODP covers local write,
                             remote write and remote read on RC and the
                             device has no known ODP defect; else pin */
  REGCACHE_MODE_PIN,      /* pinned MRs, invalidated by the monitor */
  REGCACHE_MODE_ODP,      /* ODP MRs (never stale), no monitor; create fails
                             with -EOPNOTSUPP where ODP is unavailable and
                             warns on stderr where ODP has a known defect */
};

/* regcache_config.flags: how ODP mode registers (docs/odp.md). Ignored in
 * pin mode. */
/* One implicit whole-address-space MR, when the device supports implicit
 * ODP, instead of one MR per entry. Any peer that learns its rkey can reach
 * every address of the process: off unless asked for. */
#define REGCACHE_CONFIG_ODP_IMPLICIT 0x1u
/* Prefetch synchronously (ibv_advise_mr with IBV_ADVISE_MR_FLAG_FLUSH)
 * after each registration: the get returns once the pages are mapped, and
 * a failed prefetch fails the get. Default: asynchronous prefetch. */
#define REGCACHE_CONFIG_ODP_PREFETCH_SYNC 0x2u
/* No prefetch: the device faults pages in on first access. */
#define REGCACHE_CONFIG_ODP_NO_PREFETCH 0x4u
#define REGCACHE_CONFIG_FLAGS_ALL 0x7u

/* regcache_config.print_stats_at_exit (REGCACHE_STATS=1|text, json). */
#define REGCACHE_STATS_TEXT 1 /* regcache_print_stats() */
#define REGCACHE_STATS_JSON 2 /* regcache_print_stats_json() */

/* Which misses the cache keeps (docs/design.md, "Admission"). */
enum regcache_admission {
  REGCACHE_ADMISSION_ADAPTIVE = 0, /* default: serve uncached (register for
                                      the use, deregister at the put) a range
                                      invalidated again and again without a
                                      hit, and a newcomer to a full cache that
                                      was requested no more often than the
                                      entry it would evict; probe and return
                                      to caching when hits come back */
  REGCACHE_ADMISSION_ALWAYS,       /* cache every range the monitor can watch
                                      (the behaviour of version 0.1) */
};

/* Cache configuration. Initialise with regcache_config_init(), which applies
 * the defaults and then the environment (REGCACHE_MAX_ENTRIES,
 * REGCACHE_MAX_BYTES, REGCACHE_MONITOR, REGCACHE_STATS, REGCACHE_MODE,
 * REGCACHE_ODP_IMPLICIT=0|1, REGCACHE_ODP_PREFETCH=async|sync|none,
 * REGCACHE_ADMISSION=adaptive|always); change fields after that to override
 * the environment. */
struct regcache_config {
  size_t max_entries; /* unused entries beyond this are evicted (CLOCK); 0 = no
                         limit */
  size_t max_bytes;   /* unused pinned bytes beyond this are evicted; 0 = no
                         limit; not applied in ODP mode (nothing is pinned) */
  enum regcache_monitor_kind monitor;
  int print_stats_at_exit; /* print statistics to stderr at destroy/exit:
                              0, REGCACHE_STATS_TEXT or REGCACHE_STATS_JSON */
  uint32_t flags;          /* REGCACHE_CONFIG_* bits; others are -EINVAL */
  enum regcache_mode mode; /* default auto; with ODP the monitor is none */
  /* Fields after this line are newer than version 0.1. */
  enum regcache_admission admission; /* default adaptive */
};

/* Defaults, then environment. Returns -EINVAL (and leaves the defaults in
 * the bad field) when an environment variable cannot be parsed; the message
 * names the variable. */
int regcache_config_init_sz(struct regcache_config *config, size_t config_size);
static inline int regcache_config_init(struct regcache_config *config) {
  return regcache_config_init_sz(config, sizeof(*config));
}

/* Create a cache. `registrar` is copied; its ctx must outlive the cache.
 * `config` may be NULL for regcache_config_init() defaults. Fails with
 * -ENODEV when the requested monitor is unavailable and with -EOPNOTSUPP
 * when mode odp is requested where ODP is unavailable (the message says
 * why). */
int regcache_create_sz(const struct regcache_registrar *registrar,
                       const struct regcache_config *config, size_t config_size,
                       regcache_t **out);
static inline int regcache_create(const struct regcache_registrar *registrar,
                                  const struct regcache_config *config,
                                  regcache_t **out) {
  return regcache_create_sz(registrar, config, sizeof(*config), out);
}

/* Deregister everything and free the cache. Handles still held are
 * reported (stderr and regcache_last_error()) and their registrations are
 * deregistered anyway; returns -EBUSY in that case, 0 otherwise. */
int regcache_destroy(regcache_t *cache);

/* An acquired registration. Opaque; see regcache_handle_mr(). */
typedef struct regcache_handle regcache_handle_t;

/* Obtain a registration covering [addr, addr + length) with at least
 * `access`, from the cache or by registering. The range is rounded out to
 * pages. Errors: -EINVAL (length 0, NULL addr, addr + length overflows,
 * unknown access bits), -ENOMEM/-EAGAIN (pinnable memory exhausted after
 * eviction; the message names RLIMIT_MEMLOCK and its value), or the
 * registrar's error. */
int regcache_get(regcache_t *cache, const void *addr, size_t length,
                 uint32_t access, regcache_handle_t **out);

/* The registration a handle holds. Valid until regcache_put(). NULL (with
 * the message in regcache_last_error()) for a NULL handle or one already
 * released. */
const struct regcache_mr *regcache_handle_mr(const regcache_handle_t *handle);

/* Release a handle. Returns -EINVAL for a pointer that is not a handle of
 * this cache and -EALREADY for a handle already released. */
int regcache_put(regcache_t *cache, regcache_handle_t *handle);

/* Drop every cached registration overlapping [addr, addr + length). Entries
 * in use are removed from lookup now and deregistered at their last put. */
int regcache_invalidate(regcache_t *cache, const void *addr, size_t length);

/* Drop every unused registration; entries in use go at their last put. */
int regcache_flush(regcache_t *cache);

/* Why an entry was invalidated. */
enum regcache_inval_reason {
  REGCACHE_INVAL_EXPLICIT = 0, /* regcache_invalidate() */
  REGCACHE_INVAL_UNMAP,        /* munmap, brk shrink, shmdt, exit */
  REGCACHE_INVAL_REMOVE,       /* madvise(DONTNEED/FREE/REMOVE), page zap */
  REGCACHE_INVAL_REMAP,        /* mremap, MAP_FIXED over */
  REGCACHE_INVAL_MIGRATE,      /* page migration, exclusive access (kmod) */
  REGCACHE_INVAL_FLUSH,        /* regcache_flush() */
  REGCACHE_INVAL_FORK,         /* dropped in a forked child */
  REGCACHE_INVAL_NREASONS
};

/* Statistics. Counters are totals since creation; "now" fields are current.
 * Read with regcache_stats(); values from concurrent threads may be a few
 * operations behind. */
struct regcache_stats {
  uint64_t hits;            /* gets served from the cache */
  uint64_t misses;          /* gets that registered */
  uint64_t registrations;   /* successful registrar reg calls */
  uint64_t deregistrations; /* registrar dereg calls */
  uint64_t registration_errors;
  uint64_t evictions; /* unused entries dropped for the limits */
  uint64_t invalidations[REGCACHE_INVAL_NREASONS];
  uint64_t uncacheable;      /* gets served by a registration not kept
                                because the monitor cannot watch it */
  uint64_t registration_ns;  /* total time spent in registrar reg */
  uint64_t entries_now;      /* entries registered (cached or in use) */
  uint64_t pinned_bytes_now; /* bytes those entries register */
  uint64_t in_use_now;       /* handles held */
  enum regcache_monitor_kind monitor; /* the monitor in effect */
  enum regcache_mode mode;            /* pin or odp: the mode in effect */
  char mode_reason[160];    /* why, e.g. "rxe0: no on-demand paging ..." */
  char monitor_reason[160]; /* why this monitor, e.g. "auto: kmod
                               (/dev/regcache is available)" */
  /* Fields after this line are newer than version 0.1. */
  uint64_t uncached_churn;     /* gets served uncached because their range
                                  was invalidated again and again without a
                                  hit (admission; also counted in misses) */
  uint64_t uncached_admission; /* gets served uncached because the cache was
                                  full and the range was requested no more
                                  often than the entry it would evict */
  /* Pin-once memory (regcache_mem_alloc): allocations that succeeded, how
   * many of them reused a freed block (no registration), and how many
   * allocations and bytes got each kind of memory. */
  uint64_t mem_allocs;
  uint64_t mem_reuses;
  uint64_t mem_pages_allocs; /* ordinary pages (no flag) */
  uint64_t mem_pages_bytes;
  uint64_t mem_hugetlb_allocs; /* hugetlb pages (REGCACHE_MEM_HUGE[_ONLY]) */
  uint64_t mem_hugetlb_bytes;
  uint64_t mem_thp_allocs; /* transparent huge pages (REGCACHE_MEM_HUGE
                              without reserved hugetlb pages) */
  uint64_t mem_thp_bytes;
  uint64_t mem_contig_allocs; /* physically contiguous (REGCACHE_MEM_CONTIG) */
  uint64_t mem_contig_bytes;
  uint64_t mem_bytes_now;      /* mapped and registered by the pool:
                                  allocated plus freed-and-kept */
  uint64_t mem_free_bytes_now; /* of those, freed and kept for reuse */
};

int regcache_stats_sz(regcache_t *cache, struct regcache_stats *out,
                      size_t stats_size);
static inline int regcache_stats(regcache_t *cache,
                                 struct regcache_stats *out) {
  return regcache_stats_sz(cache, out, sizeof(*out));
}

/* Pin-once memory: a pool of memory registered once, with the cache's
 * registrar and REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_WRITE |
 * REGCACHE_ACCESS_REMOTE_READ, when it is allocated. Every regcache_get()
 * inside an allocation with at most those rights is a hit from the first
 * call (a get at the allocation's first page takes no lock; one starting
 * further in is served under the cache mutex the first time, without
 * registering); the registration is never evicted while the memory is
 * allocated. regcache_mem_free() keeps the block mapped and registered for
 * a later allocation that fits, so freeing and allocating again costs no
 * registration; regcache_mem_trim() and regcache_destroy() return kept
 * blocks to the system (docs/pinonce.md).
 *
 * Limits: in pin mode the pool's bytes (allocated and kept) count against
 * max_bytes and its blocks against max_entries, together with the cache's
 * registrations; CLOCK eviction never takes pool memory. An allocation
 * that would take the pool past a limit first returns kept blocks to the
 * system, then fails with -ENOMEM. A registration that runs out of
 * pinnable memory returns every kept block before its retry.
 *
 * Thread safety: the three functions may be called from any thread, with
 * each other and with regcache_get()/regcache_put() on the same cache, but
 * not with regcache_destroy(). Memory allocated by one thread may be freed
 * by another.
 *
 * Lifetime: an allocation stays mapped and registered until
 * regcache_mem_free() or regcache_destroy(), which unmaps every block, free
 * or not: pointers from regcache_mem_alloc() are invalid after
 * regcache_destroy(). A handle from regcache_get() inside an allocation
 * keeps its registration (its keys) valid after regcache_mem_free() as
 * usual, but the memory belongs to the pool again. Memory that is unmapped
 * or remapped behind the pool's back (munmap, mremap, MAP_FIXED,
 * madvise(MADV_DONTNEED)) loses its registration like any cached range;
 * the pool then never unmaps that address itself, and regcache_mem_free()
 * of it only forgets it. In a fork child, memory the parent allocated is
 * ordinary memory (gets register it anew); the child's
 * regcache_mem_free() forgets it without unmapping it.
 */
/* regcache_mem_alloc() flags. No flag: ordinary anonymous memory, page
 * aligned. */
/* Huge pages: hugetlb pages from the system's pool (vm.nr_hugepages), else
 * transparent huge pages (a 2 MiB-aligned mapping with MADV_HUGEPAGE), else
 * -ENOMEM with a message naming vm.nr_hugepages. The length is rounded up
 * to the huge page size. */
#define REGCACHE_MEM_HUGE 0x1u
/* Physically contiguous memory from the regcache kernel module
 * (/dev/regcache). Not together with REGCACHE_MEM_HUGE or
 * REGCACHE_MEM_HUGE_ONLY (-EINVAL). -EOPNOTSUPP where this library or the
 * module cannot provide it (the message says which). */
#define REGCACHE_MEM_CONTIG 0x2u
/* hugetlb pages only (implies REGCACHE_MEM_HUGE): no transparent huge page
 * fallback; -ENOMEM naming vm.nr_hugepages without reserved pages. */
#define REGCACHE_MEM_HUGE_ONLY 0x4u
#define REGCACHE_MEM_FLAGS_ALL 0x7u

/* Allocate `length` bytes of registered memory into *addr (aligned to the
 * page, or to the huge page with the HUGE flags). Errors: -EINVAL (NULL
 * cache or addr, length 0, unknown flags, HUGE with CONTIG), -ENOMEM (no
 * memory of that kind, or the limits above; the message says which),
 * -EOPNOTSUPP (CONTIG unavailable), -ESHUTDOWN (the cache is being
 * destroyed), or the registrar's error. Nothing is mapped on failure. */
int regcache_mem_alloc(regcache_t *cache, size_t length, uint32_t flags,
                       void **addr);

/* Give an allocation back to the pool, which keeps it registered for
 * reuse. -EINVAL for a NULL cache; -ENOENT for a pointer that
 * regcache_mem_alloc() of this cache did not return or that was already
 * freed (nothing changes). */
int regcache_mem_free(regcache_t *cache, void *addr);

/* Return every freed block the pool keeps to the system (deregister and
 * unmap). Allocated memory is untouched. */
int regcache_mem_trim(regcache_t *cache);

/* Print statistics in a human-readable form to `stream` (a FILE *; NULL
 * for stderr), naming the process and the cache. */
int regcache_print_stats(regcache_t *cache, void *stream);

/* The same as one line of JSON: {"pid", "cache", "registrar", "mode",
 * "mode_reason", "monitor", "monitor_reason", "limits": {"max_entries",
 * "max_bytes"}, "hits", "misses", ..., "invalidations": {"unmap", ...},
 * "mem": {"allocs", "reuses", "pages": {"allocs", "bytes"}, "hugetlb",
 * "thp", "contig", "bytes_now", "free_bytes_now"}}.
 * Numbers are numbers; 0 in a limit means "no limit". */
int regcache_print_stats_json(regcache_t *cache, void *stream);

/* Every REGCACHE_* environment variable, what it accepts, its effective
 * value and where that came from ("default", "environment", "RLIMIT_MEMLOCK
 * soft limit", or why the environment's value is invalid), to `stream` (a
 * FILE *; NULL for stdout), like `fi_info -e`. */
int regcache_print_config(void *stream);

/* Names for messages: "uffd", "unmap", ... */
const char *regcache_monitor_name(enum regcache_monitor_kind kind);
const char *regcache_inval_reason_name(enum regcache_inval_reason reason);
const char *regcache_mode_name(
    enum regcache_mode mode); /* "auto", "pin", "odp" */

/* The calling thread's message for its most recent failed call ("" if
 * none). Valid until the next regcache call on this thread. */
const char *regcache_last_error(void);

#pragma GCC visibility pop

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* REGCACHE_REGCACHE_H_ */
