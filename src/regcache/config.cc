// SPDX-License-Identifier: BSD-2-Clause
// Configuration: regcache_config_init() (defaults, then the REGCACHE_*
// environment variables) and the names of the API's enumerations.
#include <sys/resource.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "abi.h"
#include "base/errors.h"
#include "regcache/regcache.h"

using regcache_internal::SetError;

namespace {

int ConfigInit(regcache_config* config);

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

const char* regcache_mode_name(enum regcache_mode mode) {
  switch (mode) {
    case REGCACHE_MODE_AUTO: return "auto";
    case REGCACHE_MODE_PIN: return "pin";
    case REGCACHE_MODE_ODP: return "odp";
  }
  return "unknown";
}

int regcache_config_init_sz(struct regcache_config* caller, size_t size) {
  if (caller == nullptr) return SetError(-EINVAL, "regcache_config_init: NULL config");
  if (size < regcache_internal::kConfigSizeV0_1) {
    return SetError(-EINVAL,
                    "regcache_config_init: a struct regcache_config of %zu bytes "
                    "is smaller than any version's (%zu)",
                    size, regcache_internal::kConfigSizeV0_1);
  }
  // Filled in full here, then copied out at the caller's size (abi.h).
  regcache_config full{};
  const int rc = ConfigInit(&full);
  regcache_internal::CopyStructOut(caller, size, &full, sizeof full);
  return rc;
}

}  // extern "C"

namespace {

int ConfigInit(regcache_config* config) {
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

}  // namespace
