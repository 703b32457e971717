// SPDX-License-Identifier: BSD-2-Clause
// What regcache-pingpong does on a device whose on-demand paging has a known
// defect. libregcache knows such devices (docs/odp.md, "Devices whose ODP is
// known to be wrong") and names the defect in the mode_reason of a cache
// made in ODP mode ("...; known defect rxe-odp-page-offset; ..."); the tool
// learns it from there, through the public API, and decides here whether
// its own transfers avoid the defect or whether the odp mode must not run.
//
// The one defect known, rxe-odp-page-offset (Soft-RoCE), misplaces the data
// of a packet whose copy into or out of the ODP MR starts inside a page or
// crosses a page boundary. Every transfer of the tool starts at the start
// of a page-aligned buffer (buffers.h: each its own mmap), and an RDMA
// WRITE is cut into packets of path-MTU bytes, so packet k starts at
// k x MTU: all packets start on a page boundary and stay within one page
// exactly when the path MTU equals the page size (4096 bytes, the largest
// RoCE MTU, on a 4 KiB-page system).
#ifndef REGCACHE_TOOLS_PINGPONG_ODP_DEFECT_H_
#define REGCACHE_TOOLS_PINGPONG_ODP_DEFECT_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace regcache_pingpong {

inline constexpr char kRxeOdpPageOffset[] = "rxe-odp-page-offset";

// The defect a regcache mode_reason names ("known defect NAME"), or "".
std::string OdpDefectIn(const std::string& mode_reason);

// Whether the odp mode may run on `device`, whose ODP has the known
// `defect` ("" = none), with this path MTU and page size (bytes): "" if
// it may, else why not, for the report ("refused on rxe0: ...").
std::string OdpRefusal(const std::string& device, const std::string& defect,
                       uint32_t path_mtu, size_t page_size);

// The report's line when the odp mode runs despite a known defect
// (OdpRefusal() said ""): which defect, and why it cannot strike here.
std::string OdpDefectAvoidedNote(const std::string& device,
                                 const std::string& defect, uint32_t path_mtu,
                                 size_t page_size);

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_ODP_DEFECT_H_
