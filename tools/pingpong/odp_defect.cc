// SPDX-License-Identifier: BSD-2-Clause
// The odp mode on a device with a known ODP defect (odp_defect.h).

#include "odp_defect.h"

#include <cctype>

namespace regcache_pingpong {
namespace {

constexpr size_t kLargestMtu = 4096;  // IBV_MTU_4096

}  // namespace

std::string OdpDefectIn(const std::string& mode_reason) {
  static const std::string kKnown = "known defect ";
  const size_t at = mode_reason.find(kKnown);
  if (at == std::string::npos) return "";
  size_t end = at + kKnown.size();
  while (end < mode_reason.size() &&
         (isalnum(static_cast<unsigned char>(mode_reason[end])) ||
          mode_reason[end] == '-' || mode_reason[end] == '_'))
    ++end;
  return mode_reason.substr(at + kKnown.size(), end - at - kKnown.size());
}

std::string OdpRefusal(const std::string& device, const std::string& defect,
                       uint32_t path_mtu, size_t page_size) {
  if (defect.empty()) return "";
  const std::string refused =
      "refused on " + device + ": its ODP has the known defect " + defect;
  if (defect != kRxeOdpPageOffset)
    return refused + ", which this tool does not know how to avoid";
  if (path_mtu == page_size) return "";
  const std::string why =
      " (a packet that starts inside a page lands misplaced): at path MTU " +
      std::to_string(path_mtu) + " with " + std::to_string(page_size) +
      "-byte pages ";
  if (page_size > kLargestMtu)
    return refused + why +
           "packets start inside pages, and no RDMA MTU reaches the page size";
  if (path_mtu < page_size)
    return refused + why +
           "packets start inside pages; it needs path MTU = page size "
           "(raise the netdev's MTU so that the port's active_mtu is " +
           std::to_string(page_size) + ", e.g. to 9000)";
  return refused + why + "packets cross page boundaries";
}

std::string OdpDefectAvoidedNote(const std::string& device,
                                 const std::string& defect, uint32_t path_mtu,
                                 size_t page_size) {
  return "runs on " + device + " despite its known ODP defect " + defect +
         ": buffers are page-aligned and path MTU " + std::to_string(path_mtu) +
         " = page size " + std::to_string(page_size) +
         ", so every packet starts on a page boundary and stays within one "
         "page";
}

}  // namespace regcache_pingpong
