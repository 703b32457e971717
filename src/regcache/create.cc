// SPDX-License-Identifier: BSD-2-Clause
// regcache_create(): checks the configuration, resolves the mode (pin or
// ODP, src/odp/mode_policy.h) for the caller's registrar, and hands the
// cache core a ready registrar and monitor kind (CacheSetup). This is the
// only place where the API layer, the registrars and the ODP code meet the
// core; the core knows nothing of ibverbs or ODP.
#include <cerrno>
#include <cstdio>

#include "base/errors.h"
#include "core/cache.h"
#include "odp/mode_policy.h"
#include "odp/verbs_ops.h"
#include "regcache/regcache.h"
#include "registrar/ibverbs.h"

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
    return SetError(-EINVAL, "regcache_create: the registrar has no %s callback",
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
  if (!mode.monitor_reason.empty())
    out->monitor_reason = mode.monitor_reason;
  else if (mode.mode == REGCACHE_MODE_ODP)
    out->monitor_reason = "none (ODP registrations never go stale)";
  return 0;
}

}  // namespace

extern "C" int regcache_create(const struct regcache_registrar* registrar,
                               const struct regcache_config* config,
                               regcache_t** out) {
  if (registrar == nullptr || out == nullptr)
    return SetError(-EINVAL, "regcache_create: NULL %s", registrar ? "out" : "registrar");
  regcache_config defaults;
  if (config == nullptr) {
    int rc = regcache_config_init(&defaults);
    if (rc != 0) return rc;
    config = &defaults;
  }
  CacheSetup setup;
  int rc = Setup(*registrar, *config, &setup);
  if (rc != 0) return rc;
  Cache* c = nullptr;
  rc = Cache::Create(setup, *config, &c);
  if (rc != 0) return rc;
  *out = reinterpret_cast<regcache_t*>(c);
  return 0;
}
