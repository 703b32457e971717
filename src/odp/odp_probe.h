// SPDX-License-Identifier: BSD-2-Clause
// What a device can do with on-demand paging (ODP), and whether that covers
// a registration's access rights.
//
// ProbeOdp() reads odp_caps (and xrc_odp_caps, max_mr_size, the vendor) from
// ibv_query_device_ex() through VerbsOps; DescribeOdp() turns the result
// into one line ("rxe0: no on-demand paging (odp_caps.general_caps = 0)",
// "mlx5_0: ODP explicit+implicit; RC: send recv write read atomic; UD:
// send"); OdpCovers() says whether the per-transport bits allow every
// operation a registration with given regcache_access bits may take part in.
#ifndef REGCACHE_SRC_ODP_ODP_PROBE_H_
#define REGCACHE_SRC_ODP_ODP_PROBE_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <string>

#include "odp/verbs_ops.h"

namespace regcache_internal {

enum class OdpTransport { kRc, kUc, kUd, kXrc };
const char* OdpTransportName(OdpTransport transport);  // "RC", "UC", ...

struct OdpCaps {
  std::string device;         // "rxe0"
  int query_error = 0;        // 0, or -errno from ibv_query_device_ex()
  uint64_t general_caps = 0;  // odp_caps.general_caps (IBV_ODP_SUPPORT*)
  // IBV_ODP_SUPPORT_{SEND,RECV,WRITE,READ,ATOMIC,SRQ_RECV} per transport.
  uint32_t rc_caps = 0, uc_caps = 0, ud_caps = 0, xrc_caps = 0;
  uint64_t max_mr_size = 0;     // orig_attr.max_mr_size: largest explicit MR
  uint32_t vendor_id = 0;       // orig_attr.vendor_id (odp_quirks.h)
  uint32_t vendor_part_id = 0;  // orig_attr.vendor_part_id

  bool supported() const {
    return query_error == 0 && (general_caps & IBV_ODP_SUPPORT) != 0;
  }
  bool implicit() const {
    return supported() && (general_caps & IBV_ODP_SUPPORT_IMPLICIT) != 0;
  }
  uint32_t transport_caps(OdpTransport transport) const;
};

// Queries `context`'s device. Always fills out->device; returns 0, or the
// negative errno of the query (also kept in out->query_error).
int ProbeOdp(ibv_context* context, const VerbsOps& ops, OdpCaps* out);

// One line for messages and statistics (see the file comment).
std::string DescribeOdp(const OdpCaps& caps);

// "send recv write read atomic srq_recv" for a set of IBV_ODP_SUPPORT_* bits
// ("none" for 0).
std::string DescribeOdpTransportCaps(uint32_t bits);

// The IBV_ODP_SUPPORT_* bits a registration with `regcache_access` needs on
// one transport:
//   always        SEND   it is the local buffer of sends and RDMA requests
//                        (the requester's WQE faults: that also covers RDMA
//                        READ responses and atomic results landing in it)
//   LOCAL_WRITE   RECV   receives land in it
//   REMOTE_WRITE  WRITE  the peer's RDMA WRITEs land in it
//   REMOTE_READ   READ   the peer's RDMA READs are served from it
//   REMOTE_ATOMIC ATOMIC the peer's atomics operate on it
// SRQ_RECV is not required (whether receives go to an SRQ is not known
// here); it is reported by DescribeOdp().
uint32_t OdpOpsNeeded(uint32_t regcache_access);

// Whether ODP on `transport` supports every operation OdpOpsNeeded() lists
// for `regcache_access`. When not, *why (if not NULL) says what is missing:
// "rxe0: no on-demand paging (odp_caps.general_caps = 0)" or "mlx5_0: ODP on
// RC lacks atomic (needed for remote atomic); rc_odp_caps = send recv write
// read".
bool OdpCovers(const OdpCaps& caps, OdpTransport transport,
               uint32_t regcache_access, std::string* why);

}  // namespace regcache_internal

#endif  // REGCACHE_SRC_ODP_ODP_PROBE_H_
