// SPDX-License-Identifier: BSD-2-Clause
// The pin/ODP mode policy (see mode_policy.h).
#include "odp/mode_policy.h"

#include <infiniband/verbs.h>

#include <cerrno>

#include "base/errors.h"
#include "odp/odp_quirks.h"

namespace regcache_internal {
namespace {

// "send/recv/write/read" for the bits OdpOpsNeeded() asks of `access`.
std::string SupportedOps(const OdpCaps& caps, uint32_t access) {
  std::string s = DescribeOdpTransportCaps(caps.rc_caps & OdpOpsNeeded(access));
  for (char& ch : s) ch = ch == ' ' ? '/' : ch;
  return s;
}

void AddWarning(ModeDecision* out, const std::string& text) {
  if (!out->warning.empty()) out->warning += "; ";
  out->warning += text;
}

// `shown`: the access whose RC operations the reason lists. `quirk`: the
// device's known ODP defect (only with a forced odp), or NULL.
int ChooseOdp(const regcache_config& config, ibv_pd* pd, const VerbsOps& ops,
              const OdpOptions& options, uint32_t shown, const OdpQuirk* quirk,
              ModeDecision* out) {
  std::unique_ptr<OdpRegistrar> odp;
  std::string note;
  int rc = OdpRegistrar::Create(pd, out->caps, options, ops, &odp, &note);
  if (rc != 0)
    return SetError(rc, "regcache_create: mode odp: %s", note.c_str());
  out->mode = REGCACHE_MODE_ODP;
  out->reason = config.mode == REGCACHE_MODE_ODP ? "requested; " : "";
  if (quirk != nullptr) {
    out->reason += std::string("known defect ") + quirk->name + "; ";
    AddWarning(out, "mode odp (requested) on " + out->caps.device +
                        ", whose ODP has a known defect (" + quirk->name +
                        "): " + quirk->defect);
  }
  out->reason += out->caps.device + " supports ODP for RC " +
                 SupportedOps(out->caps, shown) +
                 (odp->implicit_mode() ? "; implicit MR" : "; explicit MRs");
  if (!note.empty()) out->reason += " (" + note + ")";
  out->odp = std::move(odp);
  out->registrar = out->odp->registrar();
  out->monitor = REGCACHE_MONITOR_NONE;
  if (config.monitor == REGCACHE_MONITOR_KMOD ||
      config.monitor == REGCACHE_MONITOR_UFFD) {
    const std::string requested = regcache_monitor_name(config.monitor);
    out->monitor_reason = "none, not the requested " + requested +
                          ": ODP registrations never go stale";
    AddWarning(out, "monitor " + requested +
                        " requested, but mode odp uses none (ODP "
                        "registrations never go stale)");
  }
  return 0;
}

}  // namespace

int ResolveMode(const regcache_registrar& registrar, ibv_pd* pd,
                const regcache_config& config, const VerbsOps& ops,
                ModeDecision* out, const OdpOptions& options) {
  *out = ModeDecision{};
  out->registrar = registrar;
  out->monitor = config.monitor;
  const char* name = registrar.name != nullptr ? registrar.name : "(unnamed)";

  // Read as an integer: a caller may pass any value, and loading an
  // out-of-range enumerator through the enum type is undefined.
  int requested_mode;
  static_assert(sizeof requested_mode == sizeof config.mode);
  memcpy(&requested_mode, &config.mode, sizeof requested_mode);
  switch (requested_mode) {
    case REGCACHE_MODE_PIN:
      out->mode = REGCACHE_MODE_PIN;
      out->reason = "requested";
      return 0;
    case REGCACHE_MODE_AUTO:
    case REGCACHE_MODE_ODP:
      break;
    default:
      return SetError(-EINVAL,
                      "regcache_create: unknown mode %d "
                      "(expected auto, pin or odp)",
                      requested_mode);
  }
  const bool forced = requested_mode == REGCACHE_MODE_ODP;

  if (pd == nullptr) {
    if (forced) {
      return SetError(-EOPNOTSUPP,
                      "regcache_create: mode odp needs the ibverbs registrar "
                      "(regcache_registrar_ibverbs()); registrar %s is not "
                      "ibverbs",
                      name);
    }
    out->mode = REGCACHE_MODE_PIN;
    out->reason = std::string("registrar ") + name +
                  " is not ibverbs: ODP not applicable";
    return 0;
  }

  ProbeOdp(pd->context, ops, &out->caps);
  out->probed = true;
  // auto needs the usual access covered; a forced odp needs ODP at all.
  const uint32_t access = forced ? 0u : kAutoOdpAccess;
  std::string why;
  if (OdpCovers(out->caps, OdpTransport::kRc, access, &why)) {
    const OdpQuirk* quirk = FindOdpQuirk(out->caps);
    if (quirk == nullptr || forced)
      return ChooseOdp(config, pd, ops, options,
                       forced ? uint32_t(REGCACHE_ACCESS_ALL) : access, quirk,
                       out);
    out->mode = REGCACHE_MODE_PIN;
    out->reason = out->caps.device + ": ODP not used, known defect " +
                  quirk->name + " (" + quirk->summary +
                  "); REGCACHE_MODE=odp overrides";
    return 0;
  }
  if (forced) {
    return SetError(-EOPNOTSUPP,
                    "regcache_create: mode odp (REGCACHE_MODE=odp or "
                    "config.mode) is unavailable: %s",
                    why.c_str());
  }
  out->mode = REGCACHE_MODE_PIN;
  out->reason = why;
  return 0;
}

}  // namespace regcache_internal
