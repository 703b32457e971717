// SPDX-License-Identifier: BSD-2-Clause
// The C API (include/regcache/regcache.h) over Cache, and configuration from
// the environment. regcache_get/regcache_put inline the hit path here.
#include <sys/resource.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cache.h"
#include "errors.h"

using regcache_internal::Cache;
using regcache_internal::HoldSlot;
using regcache_internal::SetError;

struct regcache_cache {};  // never instantiated: regcache_t* is a Cache*
struct regcache_handle {};  // never defined: a handle is a HoldSlot*

namespace {

Cache* AsCache(regcache_t* c) { return reinterpret_cast<Cache*>(c); }

// Parses "123", "64K", "1M", "2G", "1T" (binary multiples). Returns false on
// anything else, including overflow.
bool ParseSize(const char* s, size_t* out) {
  if (s == nullptr || *s == '\0') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || s[0] == '-') return false;
  unsigned shift = 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; ++end; break;
    case 'm': case 'M': shift = 20; ++end; break;
    case 'g': case 'G': shift = 30; ++end; break;
    case 't': case 'T': shift = 40; ++end; break;
    default: return false;
  }
  if (*end == 'i' || *end == 'I') ++end;  // KiB, MiB, ...
  if (*end == 'b' || *end == 'B') ++end;
  if (*end != '\0') return false;
  if (shift != 0 && (v >> (64 - shift)) != 0) return false;
  *out = size_t(v << shift);
  return true;
}

}  // namespace

extern "C" {

const char* regcache_monitor_name(enum regcache_monitor_kind kind) {
  switch (kind) {
    case REGCACHE_MONITOR_AUTO: return "auto";
    case REGCACHE_MONITOR_NONE: return "none";
    case REGCACHE_MONITOR_UFFD: return "uffd";
    case REGCACHE_MONITOR_KMOD: return "kmod";
  }
  return "unknown";
}

const char* regcache_inval_reason_name(enum regcache_inval_reason reason) {
  switch (reason) {
    case REGCACHE_INVAL_EXPLICIT: return "explicit";
    case REGCACHE_INVAL_UNMAP: return "unmap";
    case REGCACHE_INVAL_REMOVE: return "remove";
    case REGCACHE_INVAL_REMAP: return "remap";
    case REGCACHE_INVAL_MIGRATE: return "migrate";
    case REGCACHE_INVAL_FLUSH: return "flush";
    case REGCACHE_INVAL_FORK: return "fork";
    case REGCACHE_INVAL_NREASONS: break;
  }
  return "unknown";
}

const char* regcache_last_error(void) {
  return regcache_internal::LastError();
}

int regcache_config_init(struct regcache_config* config) {
  if (config == nullptr) return SetError(-EINVAL, "regcache_config_init: NULL config");
  *config = regcache_config{};
  config->monitor = REGCACHE_MONITOR_AUTO;
  // Default byte limit: what the process may lock, when that is bounded.
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    config->max_bytes = size_t(rl.rlim_cur);
  int rc = 0;
  const char* v;
  size_t n;
  if ((v = getenv("REGCACHE_MAX_ENTRIES")) != nullptr) {
    if (ParseSize(v, &n)) config->max_entries = n;
    else rc = SetError(-EINVAL, "REGCACHE_MAX_ENTRIES=\"%s\" is not a count (e.g. 4096, 64K)", v);
  }
  if ((v = getenv("REGCACHE_MAX_BYTES")) != nullptr) {
    if (ParseSize(v, &n)) config->max_bytes = n;
    else rc = SetError(-EINVAL, "REGCACHE_MAX_BYTES=\"%s\" is not a size (e.g. 1073741824, 512M, 4G)", v);
  }
  if ((v = getenv("REGCACHE_MONITOR")) != nullptr) {
    if (!strcmp(v, "auto")) config->monitor = REGCACHE_MONITOR_AUTO;
    else if (!strcmp(v, "none")) config->monitor = REGCACHE_MONITOR_NONE;
    else if (!strcmp(v, "uffd")) config->monitor = REGCACHE_MONITOR_UFFD;
    else if (!strcmp(v, "kmod")) config->monitor = REGCACHE_MONITOR_KMOD;
    else rc = SetError(-EINVAL, "REGCACHE_MONITOR=\"%s\": expected auto, kmod, uffd or none", v);
  }
  if ((v = getenv("REGCACHE_MODE")) != nullptr) {  // docs/odp.md
    if (!strcmp(v, "auto")) config->mode = REGCACHE_MODE_AUTO;
    else if (!strcmp(v, "pin")) config->mode = REGCACHE_MODE_PIN;
    else if (!strcmp(v, "odp")) config->mode = REGCACHE_MODE_ODP;
    else rc = SetError(-EINVAL, "REGCACHE_MODE=\"%s\": expected auto, odp or pin", v);
  }
  if ((v = getenv("REGCACHE_ODP_IMPLICIT")) != nullptr) {  // docs/odp.md
    if (!strcmp(v, "0") || !strcmp(v, "1")) {
      config->flags = (config->flags & ~REGCACHE_CONFIG_ODP_IMPLICIT) |
                      (v[0] == '1' ? REGCACHE_CONFIG_ODP_IMPLICIT : 0u);
    } else {
      rc = SetError(-EINVAL, "REGCACHE_ODP_IMPLICIT=\"%s\": expected 0 or 1", v);
    }
  }
  if ((v = getenv("REGCACHE_ODP_PREFETCH")) != nullptr) {
    const uint32_t prefetch_bits =
        REGCACHE_CONFIG_ODP_PREFETCH_SYNC | REGCACHE_CONFIG_ODP_NO_PREFETCH;
    if (!strcmp(v, "async")) config->flags &= ~prefetch_bits;
    else if (!strcmp(v, "sync"))
      config->flags = (config->flags & ~prefetch_bits) | REGCACHE_CONFIG_ODP_PREFETCH_SYNC;
    else if (!strcmp(v, "none"))
      config->flags = (config->flags & ~prefetch_bits) | REGCACHE_CONFIG_ODP_NO_PREFETCH;
    else rc = SetError(-EINVAL, "REGCACHE_ODP_PREFETCH=\"%s\": expected async, sync or none", v);
  }
  if ((v = getenv("REGCACHE_STATS")) != nullptr) {
    if (!strcmp(v, "0") || !strcmp(v, "1")) config->print_stats_at_exit = v[0] == '1';
    else rc = SetError(-EINVAL, "REGCACHE_STATS=\"%s\": expected 0 or 1", v);
  }
  return rc;
}

int regcache_create(const struct regcache_registrar* registrar,
                    const struct regcache_config* config, regcache_t** out) {
  if (registrar == nullptr || out == nullptr)
    return SetError(-EINVAL, "regcache_create: NULL %s", registrar ? "out" : "registrar");
  regcache_config defaults;
  if (config == nullptr) {
    int rc = regcache_config_init(&defaults);
    if (rc != 0) return rc;
    config = &defaults;
  }
  Cache* c = nullptr;
  int rc = Cache::Create(*registrar, *config, &c);
  if (rc != 0) return rc;
  *out = reinterpret_cast<regcache_t*>(c);
  return 0;
}

int regcache_destroy(regcache_t* cache) {
  if (cache == nullptr) return SetError(-EINVAL, "regcache_destroy: NULL cache");
  return AsCache(cache)->Destroy();
}

int regcache_get(regcache_t* cache, const void* addr, size_t length,
                 uint32_t access, regcache_handle_t** out) {
  if (__builtin_expect(cache == nullptr || out == nullptr, 0))
    return SetError(-EINVAL, "regcache_get: NULL %s", cache ? "out" : "cache");
  return AsCache(cache)->Get(addr, length, access,
                             reinterpret_cast<HoldSlot**>(out));
}

const struct regcache_mr* regcache_handle_mr(const regcache_handle_t* handle) {
  const auto* slot = reinterpret_cast<const HoldSlot*>(handle);
  return &slot->entry.load(std::memory_order_relaxed)->mr;
}

int regcache_put(regcache_t* cache, regcache_handle_t* handle) {
  if (__builtin_expect(cache == nullptr, 0))
    return SetError(-EINVAL, "regcache_put: NULL cache");
  return AsCache(cache)->Put(reinterpret_cast<HoldSlot*>(handle));
}

int regcache_invalidate(regcache_t* cache, const void* addr, size_t length) {
  if (cache == nullptr) return SetError(-EINVAL, "regcache_invalidate: NULL cache");
  return AsCache(cache)->Invalidate(addr, length);
}

int regcache_flush(regcache_t* cache) {
  if (cache == nullptr) return SetError(-EINVAL, "regcache_flush: NULL cache");
  return AsCache(cache)->Flush();
}

int regcache_stats(regcache_t* cache, struct regcache_stats* out) {
  if (cache == nullptr || out == nullptr)
    return SetError(-EINVAL, "regcache_stats: NULL %s", cache ? "out" : "cache");
  AsCache(cache)->Stats(out);
  return 0;
}

int regcache_print_stats(regcache_t* cache, void* stream) {
  struct regcache_stats s;
  int rc = regcache_stats(cache, &s);
  if (rc != 0) return rc;
  FILE* f = stream != nullptr ? static_cast<FILE*>(stream) : stderr;
  const uint64_t gets = s.hits + s.misses;
  fprintf(f,
          "regcache stats: monitor=%s hits=%" PRIu64 " misses=%" PRIu64
          " hit_rate=%.1f%% registrations=%" PRIu64 " deregistrations=%" PRIu64
          " errors=%" PRIu64 " evictions=%" PRIu64 " uncacheable=%" PRIu64
          " entries=%" PRIu64 " pinned_bytes=%" PRIu64 " in_use=%" PRIu64
          " reg_time_avg_us=%.1f\n",
          regcache_monitor_name(s.monitor), s.hits, s.misses,
          gets ? 100.0 * double(s.hits) / double(gets) : 0.0, s.registrations,
          s.deregistrations, s.registration_errors, s.evictions, s.uncacheable,
          s.entries_now, s.pinned_bytes_now, s.in_use_now,
          s.registrations ? double(s.registration_ns) / 1e3 / double(s.registrations) : 0.0);
  fprintf(f, "regcache mode=%s (%s), monitor=%s (%s)\n",
          regcache_mode_name(s.mode), s.mode_reason,
          regcache_monitor_name(s.monitor), s.monitor_reason);
  fprintf(f, "regcache invalidations:");
  for (int r = 0; r < REGCACHE_INVAL_NREASONS; ++r) {
    fprintf(f, " %s=%" PRIu64,
            regcache_inval_reason_name(regcache_inval_reason(r)), s.invalidations[r]);
  }
  fprintf(f, "\n");
  return 0;
}

}  // extern "C"
