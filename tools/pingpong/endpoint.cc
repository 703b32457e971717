// SPDX-License-Identifier: BSD-2-Clause
// The verbs side of regcache-pingpong (endpoint.h): device and GID choice,
// the RC QP's INIT -> RTR -> RTS, the control slots, posting and polling.

#include "endpoint.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>

#include "odp_defect.h"
#include "posix_util.h"
#include "registrations.h"

namespace regcache_pingpong {
namespace {

bool IsIpv4Mapped(const uint8_t* raw) {
  static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(raw, kPrefix, sizeof(kPrefix)) == 0;
}

bool IsZero(const uint8_t* raw) {
  for (int i = 0; i < 16; ++i)
    if (raw[i] != 0) return false;
  return true;
}

int MtuBytes(int mtu) { return 128 << mtu; }  // IBV_MTU_256 = 1

}  // namespace

std::string QpInfo::ToText() const {
  std::ostringstream out;
  out << "qp " << qpn << ' ' << psn << ' ' << lid << ' ' << mtu << ' '
      << (has_gid ? 1 : 0);
  char hex[3];
  out << ' ';
  for (uint8_t b : gid) {
    snprintf(hex, sizeof(hex), "%02x", b);
    out << hex;
  }
  return out.str();
}

bool QpInfo::FromText(const std::string& text, QpInfo* out) {
  std::istringstream in(text);
  std::string word, gid;
  QpInfo info;
  int has_gid = 0;
  if (!(in >> word >> info.qpn >> info.psn >> info.lid >> info.mtu >> has_gid >>
        gid) ||
      word != "qp" || gid.size() != 32 || info.mtu < IBV_MTU_256 ||
      info.mtu > IBV_MTU_4096)
    return false;
  for (int i = 0; i < 16; ++i) {
    char* end = nullptr;
    const std::string byte = gid.substr(2 * i, 2);
    info.gid[i] = static_cast<uint8_t>(strtoul(byte.c_str(), &end, 16));
    if (*end != '\0') return false;
  }
  info.has_gid = has_gid != 0;
  *out = info;
  return true;
}

std::unique_ptr<Endpoint> Endpoint::Open(const DeviceOptions& options,
                                         std::string* error) {
  std::unique_ptr<Endpoint> ep(new Endpoint());
  if (!ep->Init(options, error)) return nullptr;
  return ep;
}

Endpoint::~Endpoint() {
  if (qp_ != nullptr) ibv_destroy_qp(qp_);
  if (ctrl_mr_ != nullptr) ibv_dereg_mr(ctrl_mr_);
  free(ctrl_slots_);
  if (cq_ != nullptr) ibv_destroy_cq(cq_);
  if (channel_ != nullptr) ibv_destroy_comp_channel(channel_);
  if (pd_ != nullptr) ibv_dealloc_pd(pd_);
  if (context_ != nullptr) ibv_close_device(context_);
  if (devices_ != nullptr) ibv_free_device_list(devices_);
}

bool Endpoint::Init(const DeviceOptions& options, std::string* error) {
  int count = 0;
  errno = 0;
  devices_ = ibv_get_device_list(&count);
  if (devices_ == nullptr || count == 0) {
    const int err = errno;
    *error = "no RDMA device (";
    if (devices_ == nullptr && err != 0) {
      *error += ErrnoText("ibv_get_device_list", err);
      if (err == ENOSYS) *error += ": the kernel has no RDMA support loaded";
    } else {
      *error += "ibv_get_device_list found none";
    }
    *error +=
        "); scripts/run-main.sh runs this tool in the qemu rig, on "
        "Soft-RoCE";
    return false;
  }
  ibv_device* device = nullptr;
  for (int i = 0; i < count; ++i) {
    if (options.device.empty() ||
        options.device == ibv_get_device_name(devices_[i])) {
      device = devices_[i];
      break;
    }
  }
  if (device == nullptr) {
    *error = "no RDMA device named " + options.device;
    return false;
  }
  device_name_ = ibv_get_device_name(device);
  context_ = ibv_open_device(device);
  if (context_ == nullptr)
    return *error = ErrnoText("ibv_open_device(" + device_name_ + ")", errno),
           false;
  ib_port_ = options.ib_port;
  ibv_port_attr port{};
  if (ibv_query_port(context_, static_cast<uint8_t>(ib_port_), &port) != 0) {
    *error = ErrnoText(
        device_name_ + ": ibv_query_port(" + std::to_string(ib_port_) + ")",
        errno);
    return false;
  }
  if (port.state != IBV_PORT_ACTIVE) {
    *error = device_name_ + " port " + std::to_string(ib_port_) + " is " +
             ibv_port_state_str(port.state) + ", not ACTIVE";
    return false;
  }
  mtu_ = port.active_mtu;
  if (!ChooseGid(options, error)) return false;

  pd_ = ibv_alloc_pd(context_);
  if (pd_ == nullptr) return *error = ErrnoText("ibv_alloc_pd", errno), false;
  ProbeOdp();
  polling_ = options.polling;
  if (polling_ == Polling::kAuto) {
    // Software devices (rxe, siw) are virtual devices in sysfs; their
    // protocol work runs in this kernel, on these CPUs.
    char real[PATH_MAX];
    software_ = realpath(device->ibdev_path, real) != nullptr &&
                strstr(real, "/devices/virtual/") != nullptr;
    polling_ = software_ ? Polling::kYield : Polling::kBusy;
  }
  spin_seconds_ = options.spin_us * 1e-6;
  if (polling_ == Polling::kEvents) {
    channel_ = ibv_create_comp_channel(context_);
    if (channel_ == nullptr)
      return *error = ErrnoText("ibv_create_comp_channel", errno), false;
  }
  cq_ = ibv_create_cq(context_, 256, nullptr, channel_, 0);
  if (cq_ == nullptr) return *error = ErrnoText("ibv_create_cq", errno), false;
  const size_t slots_bytes = sizeof(Ctrl) * (kRecvSlots + kSendSlots);
  ctrl_slots_ = static_cast<Ctrl*>(aligned_alloc(4096, 4096));
  static_assert(sizeof(Ctrl) * (kRecvSlots + kSendSlots) <= 4096);
  if (ctrl_slots_ == nullptr) return *error = "out of memory", false;
  memset(static_cast<void*>(ctrl_slots_), 0, 4096);
  // The control slots are the rendezvous's eager buffers: registered once,
  // outside every mode that is measured.
  ctrl_mr_ = ibv_reg_mr(pd_, ctrl_slots_, slots_bytes,
                        static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  if (ctrl_mr_ == nullptr)
    return *error = ErrnoText("ibv_reg_mr(control slots)", errno), false;

  ibv_qp_init_attr init{};
  init.send_cq = cq_;
  init.recv_cq = cq_;
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = kSendSlots + 4;
  init.cap.max_recv_wr = kRecvSlots;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.cap.max_inline_data = sizeof(Ctrl);
  qp_ = ibv_create_qp(pd_, &init);
  if (qp_ == nullptr) {  // some devices have no inline data
    init.cap.max_inline_data = 0;
    qp_ = ibv_create_qp(pd_, &init);
  }
  if (qp_ == nullptr)
    return *error = ErrnoText("ibv_create_qp(RC)", errno), false;
  inline_ctrl_ = init.cap.max_inline_data >= sizeof(Ctrl);

  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = static_cast<uint8_t>(ib_port_);
  attr.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
  if (ibv_modify_qp(qp_, &attr,
                    IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
                        IBV_QP_ACCESS_FLAGS) != 0)
    return *error = ErrnoText("ibv_modify_qp(INIT)", errno), false;
  for (uint32_t slot = 0; slot < kRecvSlots; ++slot) {
    if (!PostRecv(slot, error)) return false;
  }

  std::random_device random;
  local_.qpn = qp_->qp_num;
  local_.psn = random() & 0xffffff;
  local_.lid = port.lid;
  local_.mtu = mtu_;
  local_.has_gid = use_grh_;
  memcpy(local_.gid, gid_.raw, sizeof(local_.gid));
  return true;
}

bool Endpoint::ChooseGid(const DeviceOptions& options, std::string* error) {
  ibv_port_attr port{};
  ibv_query_port(context_, static_cast<uint8_t>(ib_port_), &port);
  const bool ethernet = port.link_layer == IBV_LINK_LAYER_ETHERNET;
  if (options.gid_index >= 0) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context_, ib_port_, uint32_t(options.gid_index),
                         &entry, 0) != 0) {
      *error = ErrnoText(
          device_name_ + ": GID index " + std::to_string(options.gid_index),
          errno);
      return false;
    }
    gid_index_ = options.gid_index;
    memcpy(gid_.raw, entry.gid.raw, 16);
    gid_type_ = entry.gid_type == IBV_GID_TYPE_ROCE_V2   ? "RoCE v2"
                : entry.gid_type == IBV_GID_TYPE_ROCE_V1 ? "RoCE v1"
                                                         : "IB";
    use_grh_ = true;
    return true;
  }
  if (!ethernet) {  // InfiniBand: LIDs, no GRH
    use_grh_ = false;
    return true;
  }
  // RoCE: prefer a v2 IPv4-mapped GID, then any IPv4-mapped one.
  int fallback = -1;
  for (int i = 0; i < port.gid_tbl_len; ++i) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context_, ib_port_, uint32_t(i), &entry, 0) != 0)
      continue;
    if (IsZero(entry.gid.raw) || !IsIpv4Mapped(entry.gid.raw)) continue;
    if (entry.gid_type == IBV_GID_TYPE_ROCE_V2) {
      gid_index_ = i;
      memcpy(gid_.raw, entry.gid.raw, 16);
      gid_type_ = "RoCE v2";
      use_grh_ = true;
      return true;
    }
    if (fallback < 0) {
      fallback = i;
      memcpy(gid_.raw, entry.gid.raw, 16);
    }
  }
  if (fallback < 0) {
    *error = device_name_ + " port " + std::to_string(ib_port_) +
             " has no IPv4 GID: give one with -g (ibv_devinfo -v lists them)";
    return false;
  }
  gid_index_ = fallback;
  gid_type_ = "RoCE v1";
  use_grh_ = true;
  return true;
}

void Endpoint::ProbeOdp() {
  ibv_device_attr_ex attr{};
  const int rc = ibv_query_device_ex(context_, nullptr, &attr);
  char text[160];
  if (rc != 0) {
    snprintf(text, sizeof(text), "unsupported on %s (ibv_query_device_ex: %s)",
             device_name_.c_str(), strerror(rc));
  } else if ((attr.odp_caps.general_caps & IBV_ODP_SUPPORT) == 0) {
    snprintf(text, sizeof(text), "unsupported on %s (odp_caps = %llu)",
             device_name_.c_str(),
             static_cast<unsigned long long>(attr.odp_caps.general_caps));
  } else {
    // The payload buffers are the local side of RDMA WRITEs (SEND bit) and
    // the target of the peer's (WRITE bit), on RC.
    const uint32_t need = IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_WRITE;
    const uint32_t rc_caps = attr.odp_caps.per_transport_caps.rc_odp_caps;
    if ((rc_caps & need) == need) {
      // The device has it; libregcache may know it to be wrong.
      std::string why;
      if (!ProbeLibraryOdp(pd_, &odp_defect_, &why)) odp_unavailable_ = why;
      return;
    }
    snprintf(
        text, sizeof(text),
        "unsupported on %s (ODP on RC lacks send/write: rc_odp_caps = 0x%x)",
        device_name_.c_str(), rc_caps);
  }
  odp_unavailable_ = text;
}

std::string Endpoint::Describe() const {
  std::string out = device_name_ + " port " + std::to_string(ib_port_);
  if (use_grh_) {
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET6, gid_.raw, ip, sizeof(ip));
    out += " GID[" + std::to_string(gid_index_) + "] " + ip + " " + gid_type_;
  } else {
    out += " LID " + std::to_string(local_.lid);
  }
  out += ", MTU " + std::to_string(MtuBytes(mtu_));
  out += std::string(", polling ") + PollingName(polling_);
  if (software_) out += " (software device)";
  return out;
}

bool Endpoint::Connect(const QpInfo& remote, std::string* error) {
  if (use_grh_ && !remote.has_gid) {
    *error = "the peer has no GID but this port needs one (RoCE)";
    return false;
  }
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = static_cast<ibv_mtu>(std::min<int>(mtu_, remote.mtu));
  attr.dest_qp_num = remote.qpn;
  attr.rq_psn = remote.psn;
  attr.max_dest_rd_atomic = 1;
  attr.min_rnr_timer = 12;
  attr.ah_attr.dlid = remote.lid;
  attr.ah_attr.port_num = static_cast<uint8_t>(ib_port_);
  if (use_grh_) {
    attr.ah_attr.is_global = 1;
    memcpy(attr.ah_attr.grh.dgid.raw, remote.gid, 16);
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(gid_index_);
    attr.ah_attr.grh.hop_limit = 64;
  }
  if (ibv_modify_qp(qp_, &attr,
                    IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
                        IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                        IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER) != 0)
    return *error = ErrnoText("ibv_modify_qp(RTR)", errno), false;
  attr = {};
  attr.qp_state = IBV_QPS_RTS;
  attr.timeout = 14;
  attr.retry_cnt = 7;
  attr.rnr_retry = 7;
  attr.sq_psn = local_.psn;
  attr.max_rd_atomic = 1;
  if (ibv_modify_qp(qp_, &attr,
                    IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                        IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                        IBV_QP_MAX_QP_RD_ATOMIC) != 0)
    return *error = ErrnoText("ibv_modify_qp(RTS)", errno), false;
  if (odp_unavailable_.empty() && !odp_defect_.empty()) {
    const uint32_t path_mtu =
        static_cast<uint32_t>(MtuBytes(std::min<int>(mtu_, remote.mtu)));
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    odp_unavailable_ = OdpRefusal(device_name_, odp_defect_, path_mtu, page);
    if (odp_unavailable_.empty())
      odp_note_ =
          OdpDefectAvoidedNote(device_name_, odp_defect_, path_mtu, page);
  }
  return true;
}

bool Endpoint::PostRecv(uint32_t slot, std::string* error) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(&ctrl_slots_[slot]);
  sge.length = sizeof(Ctrl);
  sge.lkey = ctrl_mr_->lkey;
  ibv_recv_wr wr{};
  wr.wr_id = slot;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (const int rc = ibv_post_recv(qp_, &wr, &bad); rc != 0) {
    *error = ErrnoText("ibv_post_recv", rc);
    return false;
  }
  return true;
}

int Endpoint::Poll(std::string* error) {
  ibv_wc wcs[16];
  const int n = ibv_poll_cq(cq_, 16, wcs);
  if (n < 0) {
    *error = "ibv_poll_cq failed";
    return -1;
  }
  for (int i = 0; i < n; ++i) {
    const ibv_wc& wc = wcs[i];
    if (wc.status != IBV_WC_SUCCESS) {
      const char* what = (wc.wr_id & kWriteWrId)  ? "RDMA WRITE"
                         : (wc.wr_id & kSendWrId) ? "control SEND"
                                                  : "RECV";
      *error = std::string(what) + " completed with " +
               ibv_wc_status_str(wc.status) + " (vendor error " +
               std::to_string(wc.vendor_err) + ")";
      return -1;
    }
    if (wc.wr_id & kWriteWrId) {
      ++writes_done_;
    } else if (wc.wr_id & kSendWrId) {
      ++sends_done_;
    } else {
      const uint32_t slot = static_cast<uint32_t>(wc.wr_id);
      Arrival arrival;
      if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        arrival.is_data = true;
        arrival.imm = ntohl(wc.imm_data);
        arrival.bytes = wc.byte_len;
      } else {
        memcpy(&arrival.ctrl, &ctrl_slots_[slot], sizeof(Ctrl));
      }
      arrivals_.push_back(arrival);
      if (!PostRecv(slot, error)) return -1;
    }
  }
  return n;
}

bool Endpoint::Wait(const std::function<bool()>& done, double timeout_s,
                    const char* what, std::string* error) {
  const double deadline = Now() + timeout_s;
  for (uint32_t idle = 0; !done();) {
    const int n = Poll(error);
    if (n < 0) return false;
    if (n > 0) {
      idle = 0;
      continue;
    }
    if (polling_ == Polling::kEvents) {
      // Spin a little first (a reply is often already on its way), then
      // arm, poll once more (a completion that came before the arm raises
      // no event), and sleep.
      if (idle++ == 0) spin_until_ = Now() + spin_seconds_;
      if (Now() < spin_until_) continue;
      if (!armed_) {
        if (ibv_req_notify_cq(cq_, 0) != 0) {
          *error = "ibv_req_notify_cq failed";
          return false;
        }
        armed_ = true;
        continue;
      }
      pollfd p{channel_->fd, POLLIN, 0};
      const double left = deadline - Now();
      if (left <= 0) break;
      const int rc =
          poll(&p, 1, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
      if (rc < 0 && errno != EINTR) {
        *error = ErrnoText("poll(completion channel)", errno);
        return false;
      }
      if (rc > 0) {
        ibv_cq* cq = nullptr;
        void* context = nullptr;
        if (ibv_get_cq_event(channel_, &cq, &context) != 0) {
          *error = "ibv_get_cq_event failed";
          return false;
        }
        ibv_ack_cq_events(cq, 1);
        armed_ = false;
      }
      continue;
    }
    if (polling_ == Polling::kYield) sched_yield();
    if ((++idle & 1023) == 0 && Now() > deadline) break;
  }
  if (done()) return true;
  *error = std::string(what) + ": nothing completed in " +
           std::to_string(int(timeout_s)) + " s";
  return false;
}

bool Endpoint::Next(Arrival* out, double timeout_s, std::string* error) {
  if (!Wait([this] { return !arrivals_.empty(); }, timeout_s,
            "waiting for the peer's message", error))
    return false;
  *out = arrivals_.front();
  arrivals_.pop_front();
  return true;
}

bool Endpoint::Send(const Ctrl& ctrl, std::string* error) {
  // At most kSendSlots sends in flight, so a slot is free when reused (RC
  // completes sends in order).
  if (!Wait([this] { return sends_posted_ - sends_done_ < kSendSlots; },
            kSendTimeout, "waiting for a send slot", error))
    return false;
  const uint32_t slot = static_cast<uint32_t>(sends_posted_ % kSendSlots);
  Ctrl* buf = &ctrl_slots_[kRecvSlots + slot];
  *buf = ctrl;
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(buf);
  sge.length = sizeof(Ctrl);
  sge.lkey = ctrl_mr_->lkey;
  ibv_send_wr wr{};
  wr.wr_id = kSendWrId | slot;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED | (inline_ctrl_ ? IBV_SEND_INLINE : 0);
  ibv_send_wr* bad = nullptr;
  if (const int rc = ibv_post_send(qp_, &wr, &bad); rc != 0) {
    *error = ErrnoText("ibv_post_send(SEND)", rc);
    return false;
  }
  ++sends_posted_;
  return true;
}

bool Endpoint::WriteWithImm(const void* local, size_t length, uint32_t lkey,
                            uint64_t remote_addr, uint32_t rkey, uint32_t imm,
                            double timeout_s, std::string* error) {
  if (!Wait([this] { return sends_posted_ - sends_done_ < kSendSlots; },
            kSendTimeout, "waiting for a send slot", error))
    return false;
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(local);
  sge.length = static_cast<uint32_t>(length);
  sge.lkey = lkey;
  ibv_send_wr wr{};
  wr.wr_id = kWriteWrId | imm;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.imm_data = htonl(imm);
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  ibv_send_wr* bad = nullptr;
  if (const int rc = ibv_post_send(qp_, &wr, &bad); rc != 0) {
    *error = ErrnoText("ibv_post_send(RDMA_WRITE_WITH_IMM)", rc);
    return false;
  }
  ++writes_posted_;
  return Wait([this] { return writes_done_ == writes_posted_; }, timeout_s,
              "RDMA WRITE", error);
}

}  // namespace regcache_pingpong
