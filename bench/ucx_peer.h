// SPDX-License-Identifier: BSD-2-Clause
//
// The peer the hit-path benchmark measures regcache against: UCX's
// ucs_rcache (libucs, UCX 1.13), the registration cache every UCX transport
// uses. UcxRcachePeer owns one ucs_rcache with a no-op registrar and NO
// memory-event hooks (ucm_events = 0), so what is timed is UCX's lookup data
// structure and locking, not libucm's mmap/munmap interception — the same
// thing regcache is measured on with REGCACHE_MONITOR_NONE.
//
// Thread safety: Get() and Put() may race freely (ucs_rcache is thread safe);
// Create() and the destructor must not race with anything.
#ifndef REGCACHE_BENCH_UCX_PEER_H_
#define REGCACHE_BENCH_UCX_PEER_H_

#include <stddef.h>
#include <sys/mman.h>

#include <string>

// rcache.h has no extern "C" guard of its own.
extern "C" {
#include <ucs/memory/rcache.h>
}

namespace regcache_bench {

class UcxRcachePeer {
 public:
  UcxRcachePeer() = default;
  ~UcxRcachePeer();
  UcxRcachePeer(const UcxRcachePeer&) = delete;
  UcxRcachePeer& operator=(const UcxRcachePeer&) = delete;

  // Creates the rcache. Returns false and says why on failure.
  bool Create(std::string* why);

  // A region covering [addr, addr + len) with PROT_READ|PROT_WRITE, holding
  // one reference; nullptr on failure. Inline so that the UCX side pays the
  // same single out-of-line call into its library as regcache_get() does.
  ucs_rcache_region_t* Get(void* addr, size_t len) {
    ucs_rcache_region_t* region = nullptr;
    ucs_status_t status =
        ucs_rcache_get(rcache_, addr, len, PROT_READ | PROT_WRITE,
                       /*arg=*/nullptr, &region);
    return status == UCS_OK ? region : nullptr;
  }

  // Drops the reference Get() took.
  void Put(ucs_rcache_region_t* region) {
    ucs_rcache_region_put(rcache_, region);
  }

  // Registrar calls so far (misses that registered); a hit makes none.
  unsigned long registrations() const { return registrations_; }

 private:
  static ucs_status_t MemReg(void* context, ucs_rcache_t* rcache, void* arg,
                             ucs_rcache_region_t* region, uint16_t flags);
  static void MemDereg(void* context, ucs_rcache_t* rcache,
                       ucs_rcache_region_t* region);
  static void DumpRegion(void* context, ucs_rcache_t* rcache,
                         ucs_rcache_region_t* region, char* buf, size_t max);

  ucs_rcache_t* rcache_ = nullptr;
  unsigned long registrations_ = 0;  // written under UCX's page-table wrlock
};

}  // namespace regcache_bench

#endif  // REGCACHE_BENCH_UCX_PEER_H_
