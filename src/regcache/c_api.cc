// SPDX-License-Identifier: BSD-2-Clause
// The C API (include/regcache/regcache.h) over Cache: everything but
// configuration (config.cc) and creation (create.cc). regcache_get and
// regcache_put inline the hit path here.
#include <sys/resource.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "abi.h"
#include "base/errors.h"
#include "core/cache.h"

using regcache_internal::Cache;
using regcache_internal::HoldSlot;
using regcache_internal::SetError;

struct regcache_cache {};  // never instantiated: regcache_t* is a Cache*
struct regcache_handle {};  // never defined: a handle is a HoldSlot*

namespace {

Cache* AsCache(regcache_t* c) { return reinterpret_cast<Cache*>(c); }

}  // namespace

extern "C" {

const char* regcache_last_error(void) {
  return regcache_internal::LastError();
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
  if (__builtin_expect(handle == nullptr, 0)) {
    SetError(-EINVAL, "regcache_handle_mr: NULL handle");
    return nullptr;
  }
  const auto* slot = reinterpret_cast<const HoldSlot*>(handle);
  if (__builtin_expect(slot->held.load(std::memory_order_relaxed) == 0, 0)) {
    SetError(-EINVAL, "regcache_handle_mr: the handle was released");
    return nullptr;
  }
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

int regcache_stats_sz(regcache_t* cache, struct regcache_stats* out, size_t size) {
  if (cache == nullptr || out == nullptr)
    return SetError(-EINVAL, "regcache_stats: NULL %s", cache ? "out" : "cache");
  if (size < regcache_internal::kStatsSizeV0_1) {
    return SetError(-EINVAL,
                    "regcache_stats: a struct regcache_stats of %zu bytes is "
                    "smaller than any version's (%zu)",
                    size, regcache_internal::kStatsSizeV0_1);
  }
  struct regcache_stats full;
  AsCache(cache)->Stats(&full);
  regcache_internal::CopyStructOut(out, size, &full, sizeof full);
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
