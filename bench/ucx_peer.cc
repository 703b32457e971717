// SPDX-License-Identifier: BSD-2-Clause
//
// UcxRcachePeer: creates a UCX 1.13 ucs_rcache with parameters modelled on
// what UCX's own memory domains pass (page alignment, unlimited size and
// region count), a registrar that registers nothing, and no memory-event
// hooks. See ucx_peer.h for why the hooks are off.
#include "ucx_peer.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>

namespace regcache_bench {
ucs_status_t UcxRcachePeer::MemReg(void* context, ucs_rcache_t* rcache,
                                   void* arg, ucs_rcache_region_t* region,
                                   uint16_t flags) {
  // Called with UCX's page-table lock held for writing, so a plain increment
  // is race-free.
  ++static_cast<UcxRcachePeer*>(context)->registrations_;
  return UCS_OK;
}

void UcxRcachePeer::MemDereg(void* context, ucs_rcache_t* rcache,
                             ucs_rcache_region_t* region) {}

void UcxRcachePeer::DumpRegion(void* context, ucs_rcache_t* rcache,
                               ucs_rcache_region_t* region, char* buf,
                               size_t max) {
  snprintf(buf, max, "no-op");
}

bool UcxRcachePeer::Create(std::string* why) {
  static const ucs_rcache_ops_t ops = {
      .mem_reg = &UcxRcachePeer::MemReg,
      .mem_dereg = &UcxRcachePeer::MemDereg,
      .dump_region = &UcxRcachePeer::DumpRegion,
  };
  const size_t page_size = static_cast<size_t>(sysconf(_SC_PAGESIZE));

  ucs_rcache_params_t params = {};
  params.region_struct_size = sizeof(ucs_rcache_region_t);
  params.alignment = page_size;  // as UCX's IB memory domain
  params.max_alignment = page_size;
  params.ucm_events = 0;             // no mmap/munmap hooks: see ucx_peer.h
  params.ucm_event_priority = 1000;  // UCX's default RCACHE_EVENT_PRIORITY
  params.ops = &ops;
  params.context = this;
  params.flags = 0;
  params.max_regions = ULONG_MAX;  // no eviction
  params.max_size = SIZE_MAX;
  params.max_unreleased = SIZE_MAX;

  // UCX lists each rcache by name (its vfs); give every instance its own.
  static std::atomic<int> instances{0};
  const std::string name = "regcache_bench_" + std::to_string(instances++);
  ucs_status_t status = ucs_rcache_create(&params, name.c_str(),
                                          /*stats_parent=*/nullptr, &rcache_);
  if (status != UCS_OK) {
    rcache_ = nullptr;
    if (why != nullptr) {
      *why = std::string("ucs_rcache_create: ") + ucs_status_string(status);
    }
    return false;
  }
  return true;
}

UcxRcachePeer::~UcxRcachePeer() {
  if (rcache_ != nullptr) ucs_rcache_destroy(rcache_);
}

}  // namespace regcache_bench
