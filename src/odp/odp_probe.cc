// SPDX-License-Identifier: BSD-2-Clause
// The ODP probe: reads a device's on-demand paging capabilities and decides
// whether they cover a registration's access (see odp_probe.h).
#include "odp/odp_probe.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "regcache/regcache.h"

namespace regcache_internal {
namespace {

struct CapName {
  uint32_t bit;
  const char* name;
};
constexpr CapName kCapNames[] = {
    {IBV_ODP_SUPPORT_SEND, "send"},     {IBV_ODP_SUPPORT_RECV, "recv"},
    {IBV_ODP_SUPPORT_WRITE, "write"},   {IBV_ODP_SUPPORT_READ, "read"},
    {IBV_ODP_SUPPORT_ATOMIC, "atomic"}, {IBV_ODP_SUPPORT_SRQ_RECV, "srq_recv"},
};

// Why an operation is needed, for OdpCovers()' message.
const char* NeededFor(uint32_t bit) {
  switch (bit) {
    case IBV_ODP_SUPPORT_SEND:
      return "local use in sends and RDMA requests";
    case IBV_ODP_SUPPORT_RECV:
      return "local write: receives";
    case IBV_ODP_SUPPORT_WRITE:
      return "remote write";
    case IBV_ODP_SUPPORT_READ:
      return "remote read";
    case IBV_ODP_SUPPORT_ATOMIC:
      return "remote atomic";
  }
  return "?";
}

constexpr OdpTransport kTransports[] = {OdpTransport::kRc, OdpTransport::kUc,
                                        OdpTransport::kUd, OdpTransport::kXrc};

std::string Lower(const char* s) {
  std::string out(s);
  for (char& ch : out) ch = char(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
  return out;
}

}  // namespace

const char* OdpTransportName(OdpTransport transport) {
  switch (transport) {
    case OdpTransport::kRc:
      return "RC";
    case OdpTransport::kUc:
      return "UC";
    case OdpTransport::kUd:
      return "UD";
    case OdpTransport::kXrc:
      return "XRC";
  }
  return "?";
}

uint32_t OdpCaps::transport_caps(OdpTransport transport) const {
  switch (transport) {
    case OdpTransport::kRc:
      return rc_caps;
    case OdpTransport::kUc:
      return uc_caps;
    case OdpTransport::kUd:
      return ud_caps;
    case OdpTransport::kXrc:
      return xrc_caps;
  }
  return 0;
}

int ProbeOdp(ibv_context* context, const VerbsOps& ops, OdpCaps* out) {
  *out = OdpCaps{};
  out->device = VerbsDeviceName(context);
  if (context == nullptr) {
    out->query_error = -EINVAL;
    return out->query_error;
  }
  ibv_device_attr_ex attr;
  memset(&attr, 0, sizeof attr);
  errno = 0;
  int ret = ops.query_device_ex(ops.self, context, &attr);
  if (ret != 0) {
    // libibverbs returns a positive errno; be lenient about the sign.
    out->query_error = ret > 0 ? -ret : ret;
    return out->query_error;
  }
  out->general_caps = attr.odp_caps.general_caps;
  out->rc_caps = attr.odp_caps.per_transport_caps.rc_odp_caps;
  out->uc_caps = attr.odp_caps.per_transport_caps.uc_odp_caps;
  out->ud_caps = attr.odp_caps.per_transport_caps.ud_odp_caps;
  out->xrc_caps = attr.xrc_odp_caps;
  out->max_mr_size = attr.orig_attr.max_mr_size;
  out->vendor_id = attr.orig_attr.vendor_id;
  out->vendor_part_id = attr.orig_attr.vendor_part_id;
  return 0;
}

std::string DescribeOdpTransportCaps(uint32_t bits) {
  std::string out;
  for (const CapName& c : kCapNames) {
    if ((bits & c.bit) == 0) continue;
    if (!out.empty()) out += ' ';
    out += c.name;
  }
  return out.empty() ? "none" : out;
}

std::string DescribeOdp(const OdpCaps& caps) {
  std::string out = caps.device + ": ";
  if (caps.query_error != 0) {
    return out + "cannot query ODP capabilities: ibv_query_device_ex: " +
           strerror(-caps.query_error);
  }
  if (!caps.supported()) {
    char buf[96];
    if (caps.general_caps == 0) {
      snprintf(buf, sizeof buf,
               "no on-demand paging (odp_caps.general_caps = 0)");
    } else {
      snprintf(buf, sizeof buf,
               "no on-demand paging (odp_caps.general_caps = 0x%" PRIx64
               " lacks IBV_ODP_SUPPORT)",
               caps.general_caps);
    }
    return out + buf;
  }
  out += caps.implicit() ? "ODP explicit+implicit" : "ODP explicit";
  bool any = false;
  for (OdpTransport t : kTransports) {
    const uint32_t bits = caps.transport_caps(t);
    if (bits == 0) continue;
    any = true;
    out += std::string("; ") + OdpTransportName(t) + ": " +
           DescribeOdpTransportCaps(bits);
  }
  if (!any) out += "; no transport supports ODP";
  return out;
}

uint32_t OdpOpsNeeded(uint32_t regcache_access) {
  uint32_t need = IBV_ODP_SUPPORT_SEND;
  if (regcache_access & REGCACHE_ACCESS_LOCAL_WRITE)
    need |= IBV_ODP_SUPPORT_RECV;
  if (regcache_access & REGCACHE_ACCESS_REMOTE_WRITE)
    need |= IBV_ODP_SUPPORT_WRITE;
  if (regcache_access & REGCACHE_ACCESS_REMOTE_READ)
    need |= IBV_ODP_SUPPORT_READ;
  if (regcache_access & REGCACHE_ACCESS_REMOTE_ATOMIC)
    need |= IBV_ODP_SUPPORT_ATOMIC;
  return need;
}

bool OdpCovers(const OdpCaps& caps, OdpTransport transport,
               uint32_t regcache_access, std::string* why) {
  if (!caps.supported()) {
    if (why != nullptr) *why = DescribeOdp(caps);
    return false;
  }
  const uint32_t have = caps.transport_caps(transport);
  const uint32_t missing = OdpOpsNeeded(regcache_access) & ~have;
  if (missing == 0) return true;
  if (why != nullptr) {
    std::string list;
    for (const CapName& c : kCapNames) {
      if ((missing & c.bit) == 0) continue;
      if (!list.empty()) list += ", ";
      list += std::string(c.name) + " (needed for " + NeededFor(c.bit) + ")";
    }
    *why = caps.device + ": ODP on " + OdpTransportName(transport) + " lacks " +
           list + "; " + Lower(OdpTransportName(transport)) +
           "_odp_caps = " + DescribeOdpTransportCaps(have);
  }
  return false;
}

}  // namespace regcache_internal
