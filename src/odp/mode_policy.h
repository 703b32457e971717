// SPDX-License-Identifier: BSD-2-Clause
// The mode policy: pin or on-demand paging (ODP), decided once at cache
// creation.
//
// The API layer (src/regcache/create.cc) calls ResolveMode() before the
// cache exists and hands the cache the registrar and monitor kind decided
// here; the cache core never sees this file.
//
// ResolveMode() looks at the registrar, its protection domain and
// config.mode:
//   - a registrar that is not the ibverbs one (pd NULL): auto -> pin
//     ("registrar X is not ibverbs: ODP not applicable"); odp -> -EOPNOTSUPP;
//   - pin: pin, the device is not even probed;
//   - the ibverbs registrar: probe its device (odp_probe.h); auto -> ODP when
//     the device's ODP covers kAutoOdpAccess on RC and the device has no
//     known ODP defect (odp_quirks.h), else pin with the reason; odp -> ODP
//     when the device has ODP at all (RC send covered), else -EOPNOTSUPP
//     saying what is missing. A forced odp on a device with a known defect
//     is honoured with a warning.
// With ODP the decision carries the ODP registrar (which the cache keeps
// alive and registers with) and monitor NONE: ODP MRs never go stale. A
// monitor the caller asked for by name (kmod, uffd) is then not used, and
// the warning says so.
#ifndef REGCACHE_SRC_ODP_MODE_POLICY_H_
#define REGCACHE_SRC_ODP_MODE_POLICY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "odp/odp_probe.h"
#include "odp/odp_registrar.h"
#include "odp/verbs_ops.h"
#include "regcache/regcache.h"

namespace regcache_internal {

// The access `auto` requires ODP to cover on RC before it chooses ODP: what
// a typical RDMA application registers (receive buffers, RDMA WRITE targets
// and RDMA READ sources). Atomics are not required; an ODP cache refuses an
// atomic request with -EOPNOTSUPP when the device lacks RC atomic ODP.
inline constexpr uint32_t kAutoOdpAccess = REGCACHE_ACCESS_LOCAL_WRITE |
                                           REGCACHE_ACCESS_REMOTE_WRITE |
                                           REGCACHE_ACCESS_REMOTE_READ;

struct ModeDecision {
  regcache_mode mode = REGCACHE_MODE_PIN;  // never AUTO once resolved
  std::string reason;                      // for stats and messages
  regcache_registrar registrar{};          // what the cache registers with
  // The ODP registrar behind `registrar` in ODP mode (owns it; the cache
  // keeps this alive as long as it uses `registrar`). Null in pin mode.
  std::shared_ptr<OdpRegistrar> odp;
  // The monitor to create: config.monitor in pin mode, NONE in ODP mode.
  regcache_monitor_kind monitor = REGCACHE_MONITOR_AUTO;
  // Why `monitor` differs from config.monitor, or "" when it does not.
  std::string monitor_reason;
  // What the caller should be told on stderr ("" for nothing): a forced ODP
  // on a device with a known defect, a requested monitor set aside.
  std::string warning;
  bool probed = false;  // caps are valid
  OdpCaps caps;
};

// `pd`: the protection domain of `registrar` when it is the ibverbs
// registrar (IsIbverbsRegistrar() in src/regcache/registrar/ibverbs.h), else
// NULL. Returns 0 with *out filled, or -EINVAL (unknown mode) / -EOPNOTSUPP
// (odp requested where unavailable) with the thread's error message set.
int ResolveMode(const regcache_registrar& registrar, ibv_pd* pd,
                const regcache_config& config, const VerbsOps& ops,
                ModeDecision* out, const OdpOptions& options = OdpOptions{});

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_ODP_MODE_POLICY_H_
