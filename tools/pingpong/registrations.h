// SPDX-License-Identifier: BSD-2-Clause
// How an endpoint obtains the registration of a buffer before a message and
// gives it back after, one implementation per mode (options.h's Mode):
// ibv_reg_mr/ibv_dereg_mr every time, a regcache cache with a given monitor
// (through libregcache's public C API only), buffers registered once up
// front, a regcache cache in its ODP mode (on-demand-paging MRs), or a
// regcache cache whose buffers are its pin-once memory.
//
// Thread safety: none; one thread per Registrations.
#ifndef REGCACHE_TOOLS_PINGPONG_REGISTRATIONS_H_
#define REGCACHE_TOOLS_PINGPONG_REGISTRATIONS_H_

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "buffers.h"
#include "options.h"

namespace regcache_pingpong {

// A registration held for one message.
struct Held {
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  void* token = nullptr;  // the ibv_mr or regcache handle
};

struct RegCounters {
  uint64_t registrations = 0;  // ibv_reg_mr calls that succeeded
  uint64_t gets = 0;           // Acquire calls
  uint64_t hits = 0;           // Acquires served without registering
  // Acquires a cache served with a registration it did not keep (its
  // admission policy: regcache_stats' uncached_churn + uncached_admission).
  uint64_t uncached = 0;
};

class Registrations {
 public:
  virtual ~Registrations() = default;
  // A registration covering [addr, addr + length) with at least `access`
  // (regcache_access bits; 0 = local read, enough for an RDMA WRITE's
  // source). Returns false with *error set.
  virtual bool Acquire(void* addr, size_t length, uint32_t access, Held* out,
                       std::string* error) = 0;
  virtual bool Release(Held* held, std::string* error) = 0;
  // register-once: register [addr, addr + length) now, for good.
  virtual bool Prepare(void* addr, size_t length, std::string* error) {
    return true;
  }
  // regcache-pool: where the buffers come from (regcache_mem_alloc on this
  // mode's cache); null: mmap.
  virtual BufferAllocator* Allocator() { return nullptr; }
  virtual RegCounters Counters() = 0;
};

struct CacheSettings {
  uint64_t max_entries = 0;  // 0 = no limit
};

// Creates the mode's registrations on `pd`. Returns null with *why set when
// the mode cannot run here ("the regcache module is not loaded: ...").
// `odp_unavailable` is the endpoint's probe result ("" = ODP works);
// `odp_defect` the device's known ODP defect ("" = none), which the tool
// reports itself, so the library's warning about it is not printed again
// for every cache.
std::unique_ptr<Registrations> MakeRegistrations(
    Mode mode, ibv_pd* pd, const CacheSettings& settings,
    const std::string& odp_unavailable, const std::string& odp_defect,
    std::string* why);

// What libregcache says about ODP on `pd`'s device, from a cache created
// (and destroyed) in ODP mode: false with *why when the library cannot use
// ODP there; else true with *defect = the device's known ODP defect, ""
// for none (odp_defect.h). The library's warning is not printed.
bool ProbeLibraryOdp(ibv_pd* pd, std::string* defect, std::string* why);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_REGISTRATIONS_H_
