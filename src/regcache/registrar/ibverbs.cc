// SPDX-License-Identifier: BSD-2-Clause
// The ibverbs registrar: regcache_registrar_ibverbs().
//
// reg is ibv_reg_mr() on the protection domain kept in the registrar's ctx;
// dereg is ibv_dereg_mr() on the struct ibv_mr * kept in regcache_mr.backend.
// The only logic here is the access mapping (with the widening verbs needs)
// and turning libibverbs' errno conventions into negative return values.
#include <errno.h>
#include <infiniband/verbs.h>

#include <cstdint>

#include "base/errors.h"
#include "regcache/ibverbs.h"
#include "regcache/regcache.h"
#include "registrar/ibverbs.h"
#include "registrar/verbs_access.h"

namespace regcache_internal {
namespace {

int IbverbsReg(void* ctx, void* addr, size_t length, uint32_t access,
               regcache_mr* out) {
  if ((access & ~static_cast<uint32_t>(REGCACHE_ACCESS_ALL)) != 0)
    return -EINVAL;
  access = WidenForVerbs(access);

  errno = 0;
  ibv_mr* mr =
      ibv_reg_mr(static_cast<ibv_pd*>(ctx), addr, length, IbvAccessOf(access));
  if (mr == nullptr) return errno != 0 ? -errno : -EIO;

  // The cache set out->access to the requested bits before this call and
  // accepts a superset written back: report what was really granted.
  FillFromIbvMr(mr, access, out);
  return 0;
}

int IbverbsDereg(void* ctx, regcache_mr* mr) {
  if (mr == nullptr || mr->backend == nullptr) return -EINVAL;
  // ibv_dereg_mr() returns 0 or a positive errno value.
  const int ret = ibv_dereg_mr(static_cast<ibv_mr*>(mr->backend));
  if (ret != 0) return ret > 0 ? -ret : ret;
  mr->backend = nullptr;
  return 0;
}

}  // namespace

bool IsIbverbsRegistrar(const regcache_registrar& r, ibv_pd** pd) {
  if (r.reg != IbverbsReg || r.dereg != IbverbsDereg) return false;
  if (pd != nullptr) *pd = static_cast<ibv_pd*>(r.ctx);
  return true;
}

}  // namespace regcache_internal

extern "C" int regcache_registrar_ibverbs(struct ibv_pd* pd,
                                          struct regcache_registrar* out) {
  using namespace regcache_internal;
  if (pd == nullptr || out == nullptr) {
    return SetError(-EINVAL, "regcache_registrar_ibverbs: %s is NULL",
                    pd == nullptr ? "pd" : "out");
  }
  *out = regcache_registrar{"ibverbs", IbverbsReg, IbverbsDereg, pd};
  return 0;
}
