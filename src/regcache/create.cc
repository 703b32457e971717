// SPDX-License-Identifier: BSD-2-Clause
// regcache_create(): checks the configuration, resolves the mode (pin or
// ODP, src/odp/mode_policy.h) for the caller's registrar, and hands the
// cache core a ready registrar and monitor kind (CacheSetup). This is the
// only place where the API layer, the registrars and the ODP code meet the
// core; the core knows nothing of ibverbs or ODP.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "abi.h"
#include "base/errors.h"
#include "core/cache.h"
#include "odp/mode_policy.h"
#include "odp/verbs_ops.h"
#include "regcache/regcache.h"
#include "registrar/ibverbs.h"
#include "stats.h"

using regcache_internal::Cache;
using regcache_internal::CacheSetup;
using regcache_internal::SetError;

namespace {

int CheckFlags(const regcache_config& config) {
  if (config.flags & ~REGCACHE_CONFIG_FLAGS_ALL) {
    return SetError(-EINVAL, "regcache_create: unknown config flags 0x%x",
                    config.flags & ~REGCACHE_CONFIG_FLAGS_ALL);
  }
  if ((config.flags & REGCACHE_CONFIG_ODP_PREFETCH_SYNC) &&
      (config.flags & REGCACHE_CONFIG_ODP_NO_PREFETCH)) {
    return SetError(-EINVAL,
                    "regcache_create: REGCACHE_CONFIG_ODP_PREFETCH_SYNC and "
                    "REGCACHE_CONFIG_ODP_NO_PREFETCH together");
  }
  return 0;
}

regcache_internal::OdpOptions OdpOptionsOf(const regcache_config& config) {
  regcache_internal::OdpOptions options;
  options.implicit = (config.flags & REGCACHE_CONFIG_ODP_IMPLICIT) != 0;
  if (config.flags & REGCACHE_CONFIG_ODP_PREFETCH_SYNC)
    options.prefetch = regcache_internal::OdpPrefetch::kSync;
  else if (config.flags & REGCACHE_CONFIG_ODP_NO_PREFETCH)
    options.prefetch = regcache_internal::OdpPrefetch::kNone;
  return options;
}

// Pin or ODP, and with it the registrar and monitor the cache gets.
int Setup(const regcache_registrar& registrar, const regcache_config& config,
          CacheSetup* out) {
  if (registrar.reg == nullptr || registrar.dereg == nullptr) {
    return SetError(-EINVAL,
                    "regcache_create: the registrar has no %s callback",
                    registrar.reg == nullptr ? "reg" : "dereg");
  }
  int rc = CheckFlags(config);
  if (rc != 0) return rc;
  ibv_pd* pd = nullptr;
  if (!regcache_internal::IsIbverbsRegistrar(registrar, &pd)) pd = nullptr;
  regcache_internal::ModeDecision mode;
  rc = regcache_internal::ResolveMode(registrar, pd, config,
                                      regcache_internal::ActiveVerbsOps(),
                                      &mode, OdpOptionsOf(config));
  if (rc != 0) return rc;
  if (!mode.warning.empty())
    fprintf(stderr, "regcache: warning: %s\n", mode.warning.c_str());
  out->registrar = mode.registrar;
  out->monitor = mode.monitor;
  out->mode = mode.mode;
  out->mode_reason = mode.reason;
  out->registrar_owner = mode.odp;
  out->print_stats = regcache_internal::PrintStatsAtExit;
  if (!mode.monitor_reason.empty())
    out->monitor_reason = mode.monitor_reason;
  else if (mode.mode == REGCACHE_MODE_ODP)
    out->monitor_reason = "none (ODP registrations never go stale)";
  return 0;
}

// The caller's config at this library's size (abi.h): fields past the
// caller's struct take their defaults and environment, as
// regcache_config_init() would give them.
int ConfigFromCaller(const regcache_config* caller, size_t size,
                     regcache_config* out) {
  if (caller != nullptr && size < regcache_internal::kConfigSizeV0_1) {
    return SetError(-EINVAL,
                    "regcache_create: a struct regcache_config of %zu bytes "
                    "is smaller than any version's (%zu)",
                    size, regcache_internal::kConfigSizeV0_1);
  }
  if (caller != nullptr &&
      !regcache_internal::TailIsZero(caller, size, sizeof *out)) {
    return SetError(-EINVAL,
                    "regcache_create: the config sets fields this library "
                    "(%d.%d) does not know; link a newer libregcache",
                    REGCACHE_VERSION_MAJOR, REGCACHE_VERSION_MINOR);
  }
  if (caller == nullptr || size < sizeof *out) {
    const int rc = regcache_config_init_sz(out, sizeof *out);
    if (rc != 0) return rc;
  }
  if (caller != nullptr)
    memcpy(out, caller, size < sizeof *out ? size : sizeof *out);
  return 0;
}

}  // namespace

extern "C" int regcache_create_sz(const struct regcache_registrar* registrar,
                                  const struct regcache_config* caller_config,
                                  size_t config_size, regcache_t** out) {
  if (registrar == nullptr || out == nullptr)
    return SetError(-EINVAL, "regcache_create: NULL %s",
                    registrar ? "out" : "registrar");
  regcache_config config;
  int rc = ConfigFromCaller(caller_config, config_size, &config);
  if (rc != 0) return rc;
  CacheSetup setup;
  rc = Setup(*registrar, config, &setup);
  if (rc != 0) return rc;
  Cache* c = nullptr;
  rc = Cache::Create(setup, config, &c);
  if (rc != 0) return rc;
  *out = reinterpret_cast<regcache_t*>(c);
  return 0;
}
