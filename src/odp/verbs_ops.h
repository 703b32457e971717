// SPDX-License-Identifier: BSD-2-Clause
// VerbsOps: the verbs calls the ODP code makes, as a table of function
// pointers, so that tests can substitute a fake verbs layer
// (tests/unit/odp_fake_verbs.h) for libibverbs.
//
// Every slot is always set (DefaultVerbsOps() calls libibverbs), so the ODP
// code never checks for null. Each slot keeps libibverbs' own conventions:
// query_device_ex, dereg_mr and advise_mr return 0 or a POSITIVE errno value;
// reg_mr returns NULL with errno set. Callers turn those into negative errno.
#ifndef REGCACHE_SRC_ODP_VERBS_OPS_H_
#define REGCACHE_SRC_ODP_VERBS_OPS_H_

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>

namespace regcache_internal {

struct VerbsOps {
  const char* name;  // "libibverbs", or the fake's name
  // ibv_query_device_ex(context, NULL, attr).
  int (*query_device_ex)(void* self, ibv_context* context,
                         ibv_device_attr_ex* attr);
  // ibv_reg_mr(pd, addr, length, access); the implicit ODP MR is
  // reg_mr(pd, NULL, SIZE_MAX, IBV_ACCESS_ON_DEMAND | ...).
  ibv_mr* (*reg_mr)(void* self, ibv_pd* pd, void* addr, size_t length,
                    int access);
  // ibv_dereg_mr(mr).
  int (*dereg_mr)(void* self, ibv_mr* mr);
  // ibv_advise_mr(pd, advice, flags, sg_list, num_sge).
  int (*advise_mr)(void* self, ibv_pd* pd, ibv_advise_mr_advice advice,
                   uint32_t flags, ibv_sge* sg_list, uint32_t num_sge);
  void* self;  // passed to every slot (the fake's state; NULL for libibverbs)
};

// The table that calls libibverbs.
const VerbsOps& DefaultVerbsOps();

// What the cache uses: DefaultVerbsOps() unless a test substituted a table
// with ScopedVerbsOpsForTesting.
const VerbsOps& ActiveVerbsOps();

// Makes ActiveVerbsOps() return `ops` for this object's lifetime. For tests
// only; not thread-safe against concurrent regcache_create().
class ScopedVerbsOpsForTesting {
 public:
  explicit ScopedVerbsOpsForTesting(const VerbsOps* ops);
  ~ScopedVerbsOpsForTesting();
  ScopedVerbsOpsForTesting(const ScopedVerbsOpsForTesting&) = delete;
  ScopedVerbsOpsForTesting& operator=(const ScopedVerbsOpsForTesting&) = delete;

 private:
  const VerbsOps* previous_;
};

// The name of the device a context belongs to ("rxe0"), read from the
// context's struct ibv_device (so a fake context works too); "?" if none.
const char* VerbsDeviceName(const ibv_context* context);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_ODP_VERBS_OPS_H_
