// SPDX-License-Identifier: BSD-2-Clause
// The default VerbsOps: thin wrappers over libibverbs (two of the calls are
// static inline functions in verbs.h, so they need a wrapper to have an
// address), and the test substitution point.
#include "odp/verbs_ops.h"

#include <atomic>

namespace regcache_internal {
namespace {

int QueryDeviceEx(void*, ibv_context* context, ibv_device_attr_ex* attr) {
  return ibv_query_device_ex(context, nullptr, attr);
}

ibv_mr* RegMr(void*, ibv_pd* pd, void* addr, size_t length, int access) {
  // The parentheses call the exported function, not verbs.h's macro (which
  // would pick ibv_reg_mr_iova2 only for IBV_ACCESS_OPTIONAL_RANGE bits;
  // ON_DEMAND is not one of them).
  return (ibv_reg_mr)(pd, addr, length, access);
}

int DeregMr(void*, ibv_mr* mr) { return ibv_dereg_mr(mr); }

int AdviseMr(void*, ibv_pd* pd, ibv_advise_mr_advice advice, uint32_t flags,
             ibv_sge* sg_list, uint32_t num_sge) {
  return ibv_advise_mr(pd, advice, flags, sg_list, num_sge);
}

constexpr VerbsOps kLibibverbs = {"libibverbs", QueryDeviceEx, RegMr,
                                  DeregMr,      AdviseMr,      nullptr};

std::atomic<const VerbsOps*> g_active{&kLibibverbs};

}  // namespace

const VerbsOps& DefaultVerbsOps() { return kLibibverbs; }

const VerbsOps& ActiveVerbsOps() {
  return *g_active.load(std::memory_order_acquire);
}

ScopedVerbsOpsForTesting::ScopedVerbsOpsForTesting(const VerbsOps* ops)
    : previous_(g_active.exchange(ops, std::memory_order_acq_rel)) {}

ScopedVerbsOpsForTesting::~ScopedVerbsOpsForTesting() {
  g_active.store(previous_, std::memory_order_release);
}

const char* VerbsDeviceName(const ibv_context* context) {
  if (context == nullptr || context->device == nullptr) return "?";
  return context->device->name[0] != '\0' ? context->device->name : "?";
}

}  // namespace regcache_internal
