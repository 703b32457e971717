// SPDX-License-Identifier: BSD-2-Clause
// Devices whose on-demand paging is known to lose or misplace data.
//
// A device can advertise ODP in odp_caps and still get it wrong. The mode
// policy (mode_policy.h) consults this list before `auto` chooses ODP: a
// device on it is pinned instead, with the defect named in the reason. An
// explicit REGCACHE_MODE=odp is still honoured, with a warning, so that a
// fixed kernel or a test of the defect itself can use ODP.
//
// A quirk is recognised from what ibv_query_device_ex() reports (vendor and
// part id), not from the device's name, which the administrator chooses
// (`rdma link add NAME type rxe`).
#ifndef REGCACHE_SRC_ODP_ODP_QUIRKS_H_
#define REGCACHE_SRC_ODP_ODP_QUIRKS_H_

#include "odp/odp_probe.h"

namespace regcache_internal {

struct OdpQuirk {
  const char* name;     // identifier, e.g. "rxe-odp-page-offset"
  const char* summary;  // a few words for mode_reason (fits its 160 bytes)
  const char* defect;   // one sentence for warnings and docs
};

// The known defect of `caps`' device's ODP, or NULL when none is known.
// Only meaningful for a device that supports ODP (caps.supported()).
const OdpQuirk* FindOdpQuirk(const OdpCaps& caps);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_ODP_ODP_QUIRKS_H_
