// SPDX-License-Identifier: BSD-2-Clause
// The C API (include/regcache/regcache.h) over Cache: everything but
// configuration (config.cc), creation (create.cc) and statistics
// (stats.cc), including the pin-once memory pool's argument checks.
// regcache_get and regcache_put inline the hit path here.
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

struct regcache_cache {};   // never instantiated: regcache_t* is a Cache*
struct regcache_handle {};  // never defined: a handle is a HoldSlot*

namespace {

Cache* AsCache(regcache_t* c) { return reinterpret_cast<Cache*>(c); }

}  // namespace

extern "C" {

const char* regcache_last_error(void) { return regcache_internal::LastError(); }

int regcache_destroy(regcache_t* cache) {
  if (cache == nullptr)
    return SetError(-EINVAL, "regcache_destroy: NULL cache");
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
  if (cache == nullptr)
    return SetError(-EINVAL, "regcache_invalidate: NULL cache");
  return AsCache(cache)->Invalidate(addr, length);
}

int regcache_flush(regcache_t* cache) {
  if (cache == nullptr) return SetError(-EINVAL, "regcache_flush: NULL cache");
  return AsCache(cache)->Flush();
}

// Pin-once memory (core/pool.cc): the arguments are checked here.
int regcache_mem_alloc(regcache_t* cache, size_t length, uint32_t flags,
                       void** addr) {
  if (cache == nullptr || addr == nullptr)
    return SetError(-EINVAL, "regcache_mem_alloc: NULL %s",
                    cache ? "addr" : "cache");
  if (length == 0) return SetError(-EINVAL, "regcache_mem_alloc: length is 0");
  if (flags & ~uint32_t{REGCACHE_MEM_FLAGS_ALL}) {
    return SetError(-EINVAL, "regcache_mem_alloc: unknown flags 0x%x",
                    flags & ~uint32_t{REGCACHE_MEM_FLAGS_ALL});
  }
  if ((flags & REGCACHE_MEM_CONTIG) &&
      (flags & (REGCACHE_MEM_HUGE | REGCACHE_MEM_HUGE_ONLY))) {
    return SetError(
        -EINVAL,
        "regcache_mem_alloc: REGCACHE_MEM_CONTIG with %s: contiguous "
        "memory comes from the kernel module in pages of its own "
        "choosing; ask for one or the other",
        (flags & REGCACHE_MEM_HUGE_ONLY) ? "REGCACHE_MEM_HUGE_ONLY"
                                         : "REGCACHE_MEM_HUGE");
  }
  return AsCache(cache)->MemAlloc(length, flags, addr);
}

int regcache_mem_free(regcache_t* cache, void* addr) {
  if (cache == nullptr)
    return SetError(-EINVAL, "regcache_mem_free: NULL cache");
  if (addr == nullptr) {
    return SetError(-EINVAL, "regcache_mem_free: NULL addr");
  }
  return AsCache(cache)->MemFree(addr);
}

int regcache_mem_trim(regcache_t* cache) {
  if (cache == nullptr)
    return SetError(-EINVAL, "regcache_mem_trim: NULL cache");
  return AsCache(cache)->MemTrim();
}

}  // extern "C"
