// SPDX-License-Identifier: BSD-2-Clause
// The list of devices whose ODP is known to be wrong (see odp_quirks.h).
#include "odp/odp_quirks.h"

#include <cstdint>

namespace regcache_internal {
namespace {

// Soft-RoCE (rdma_rxe) reports vendor_id 0xFFFFFF and vendor_part_id 0.
constexpr uint32_t kRxeVendorId = 0xFFFFFF;
constexpr uint32_t kRxeVendorPartId = 0;

// rxe's ODP (Linux 6.x/7.x kernels that have it at all): an RDMA WRITE or
// READ whose copy into or out of an ODP MR does not start on a page
// boundary, or crosses one, completes successfully with the bytes at the
// wrong place (the offset within the page is dropped). With a path MTU
// below the page size every packet after a page's first starts inside the
// page, so even page-aligned buffers are hit.
constexpr OdpQuirk kRxeOdpPageOffset = {
    "rxe-odp-page-offset", "unaligned RDMA lands misplaced",
    "RDMA WRITE/READ through an rxe ODP MR that does not start on a page "
    "boundary or crosses one completes with the data misplaced"};

}  // namespace

const OdpQuirk* FindOdpQuirk(const OdpCaps& caps) {
  if (!caps.supported()) return nullptr;
  if (caps.vendor_id == kRxeVendorId && caps.vendor_part_id == kRxeVendorPartId)
    return &kRxeOdpPageOffset;
  return nullptr;
}

}  // namespace regcache_internal
