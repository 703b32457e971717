// SPDX-License-Identifier: BSD-2-Clause
// What the rest of the library may know about the ibverbs registrar
// (regcache_registrar_ibverbs() in regcache/ibverbs.h).
#ifndef REGCACHE_SRC_REGCACHE_REGISTRAR_IBVERBS_H_
#define REGCACHE_SRC_REGCACHE_REGISTRAR_IBVERBS_H_

#include "regcache/regcache.h"

struct ibv_pd;

namespace regcache_internal {

// True when `r` is a registrar regcache_registrar_ibverbs() filled; then
// *pd (if not NULL) is its protection domain. The registrar is recognised
// by its callbacks, which only this registrar has; a copy of the struct is
// recognised too. The API layer uses it to offer the mode policy
// (src/odp/mode_policy.h) the device behind the registrar.
bool IsIbverbsRegistrar(const regcache_registrar& r, ibv_pd** pd);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_REGCACHE_REGISTRAR_IBVERBS_H_
