// SPDX-License-Identifier: BSD-2-Clause
// --reg-time: what registering one large buffer costs on this device,
// pinned (ibv_reg_mr) and on demand (IBV_ACCESS_ON_DEMAND), on memory just
// mapped and on memory already written. Plain verbs: the registration
// itself, which is what a cache miss pays in either mode.
//
// Thread safety: none; call it from the thread that owns `pd`.
#ifndef REGCACHE_TOOLS_PINGPONG_REG_TIME_H_
#define REGCACHE_TOOLS_PINGPONG_REG_TIME_H_

#include <infiniband/verbs.h>

#include <cstdint>

#include "report.h"

namespace regcache_pingpong {

// Fills *out: `repetitions` registrations of `size` bytes per kind, each of
// a buffer of its own, mapped (and, for "touched", written) before the
// clock starts, deregistered and unmapped after. A kind the device refuses
// (ODP where it has none) is left unmeasured with the reason in out->note.
void MeasureRegTime(ibv_pd* pd, uint64_t size, uint32_t repetitions,
                    RegTime* out);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_REG_TIME_H_
