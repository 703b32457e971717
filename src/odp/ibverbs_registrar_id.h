// SPDX-License-Identifier: BSD-2-Clause
// Recognising the ibverbs registrar (regcache_registrar_ibverbs()) from its
// callbacks, so the mode policy (mode_policy.h) can find the protection
// domain behind it. Defined in src/regcache/registrar_ibverbs.cc.
#ifndef REGCACHE_SRC_ODP_IBVERBS_REGISTRAR_ID_H_
#define REGCACHE_SRC_ODP_IBVERBS_REGISTRAR_ID_H_

#include "regcache/regcache.h"

struct ibv_pd;

namespace regcache_internal {

// True when `r` is the registrar regcache_registrar_ibverbs() fills (its
// reg and dereg callbacks); then *pd (if not NULL) is its protection domain.
bool IsIbverbsRegistrar(const regcache_registrar& r, ibv_pd** pd);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_ODP_IBVERBS_REGISTRAR_ID_H_
