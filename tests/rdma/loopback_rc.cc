// SPDX-License-Identifier: BSD-2-Clause
// LoopbackRc (loopback_rc.h): two RC QPs of one process connected to each
// other through the device's own GID. Setup follows the usual verbs order
// (RESET -> INIT -> RTR -> RTS, with a GRH to the port's RoCE v2 IPv4 GID);
// completions are polled with a deadline, and an error completion resets
// and reconnects both QPs so a test can carry on after a negative check.
#include "loopback_rc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace regcache_rdma_test {
namespace {

constexpr int kCqDepth = 64;
constexpr int kPollTimeoutSeconds = 30;  // an emulated CPU is slow

std::string Errno(const char* what, int err) {
  return std::string(what) + ": " + strerror(err);
}

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

bool IsIpv4Mapped(const ibv_gid& gid) {
  static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(gid.raw, kPrefix, sizeof(kPrefix)) == 0;
}

std::string GidText(const ibv_gid& gid) {
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET6, gid.raw, text, sizeof(text));
  return text;
}

}  // namespace

bool LoopbackRc::AnyDevice(std::string* why_not) {
  int count = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr || count == 0) {
    if (list != nullptr) ibv_free_device_list(list);
    *why_not =
        "no RDMA device: run in the qemu+rxe rig "
        "(tests/vm/run-in-vm.sh, ctest -L vm)";
    return false;
  }
  ibv_free_device_list(list);
  return true;
}

LoopbackRc::OpenResult LoopbackRc::Open(std::unique_ptr<LoopbackRc>* out,
                                        std::string* message, ibv_mtu max_mtu) {
  out->reset();
  std::unique_ptr<LoopbackRc> rc(new LoopbackRc());
  int count = 0;
  rc->devices_ = ibv_get_device_list(&count);
  if (rc->devices_ == nullptr || count == 0) {
    AnyDevice(message);
    return OpenResult::kNoDevice;
  }
  ibv_device* chosen = nullptr;
  const char* wanted = getenv("REGCACHE_TEST_DEVICE");
  std::string names;
  for (int i = 0; i < count; ++i) {
    const char* name = ibv_get_device_name(rc->devices_[i]);
    names += std::string(names.empty() ? "" : ", ") + name;
    if (wanted != nullptr && *wanted != '\0') {
      if (strcmp(name, wanted) == 0) chosen = rc->devices_[i];
    } else if (strcmp(name, "rxe0") == 0) {
      chosen = rc->devices_[i];
    }
  }
  if (chosen == nullptr) {
    if (wanted != nullptr && *wanted != '\0') {
      *message = std::string("REGCACHE_TEST_DEVICE=") + wanted +
                 ": no such RDMA device (have: " + names + ")";
      return OpenResult::kError;
    }
    chosen = rc->devices_[0];
  }
  bool no_device = false;
  *message = rc->Init(chosen, max_mtu, &no_device);
  if (!message->empty())
    return no_device ? OpenResult::kNoDevice : OpenResult::kError;
  *out = std::move(rc);
  return OpenResult::kOk;
}

std::string LoopbackRc::Init(ibv_device* device, ibv_mtu max_mtu,
                             bool* no_device) {
  device_name_ = ibv_get_device_name(device);
  context_ = ibv_open_device(device);
  if (context_ == nullptr) {
    const int err = errno;
    std::string m =
        Errno(("ibv_open_device(" + device_name_ + ")").c_str(), err);
    if (err == EACCES || err == EPERM)
      m += " (is /dev/infiniband/uverbs* readable and writable by this user?)";
    return m;
  }
  ibv_port_attr port{};
  if (ibv_query_port(context_, port_, &port) != 0)
    return Errno("ibv_query_port", errno);
  if (port.state != IBV_PORT_ACTIVE) {
    *no_device = true;
    return device_name_ + " port 1 is " + ibv_port_state_str(port.state) +
           ", not ACTIVE";
  }
  mtu_ = port.active_mtu < max_mtu ? port.active_mtu : max_mtu;
  lid_ = port.lid;
  if (port.link_layer == IBV_LINK_LAYER_INFINIBAND) {
    gid_index_ = 0;
    if (ibv_query_gid(context_, port_, 0, &gid_) != 0)
      return Errno("ibv_query_gid(0)", errno);
  } else {
    std::string m = FindRoceIpv4Gid();
    if (!m.empty()) return m;
  }
  pd_ = ibv_alloc_pd(context_);
  if (pd_ == nullptr) return Errno("ibv_alloc_pd", errno);
  cq_ = ibv_create_cq(context_, kCqDepth, nullptr, nullptr, 0);
  if (cq_ == nullptr) return Errno("ibv_create_cq", errno);
  for (ibv_qp** qp : {&qp_a_, &qp_b_}) {
    ibv_qp_init_attr init{};
    init.send_cq = cq_;
    init.recv_cq = cq_;
    init.cap.max_send_wr = 16;
    init.cap.max_recv_wr = 1;
    init.cap.max_send_sge = 1;
    init.cap.max_recv_sge = 1;
    init.qp_type = IBV_QPT_RC;
    init.sq_sig_all = 0;
    *qp = ibv_create_qp(pd_, &init);
    if (*qp == nullptr) return Errno("ibv_create_qp", errno);
  }
  return Connect();
}

// The port's RoCE v2 GID carrying an IPv4 address (::ffff:a.b.c.d); on rxe
// over a veth with one address that is index 1, but the table says so.
std::string LoopbackRc::FindRoceIpv4Gid() {
  ibv_port_attr port{};
  if (ibv_query_port(context_, port_, &port) != 0)
    return Errno("ibv_query_port", errno);
  int fallback = -1;
  ibv_gid fallback_gid{};
  for (int i = 0; i < port.gid_tbl_len; ++i) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context_, port_, uint32_t(i), &entry, 0) != 0)
      continue;  // an empty slot (ENODATA)
    ibv_gid gid;
    memcpy(gid.raw, entry.gid.raw, sizeof(gid.raw));
    if (!IsIpv4Mapped(gid)) continue;
    if (entry.gid_type == IBV_GID_TYPE_ROCE_V2) {
      gid_index_ = i;
      gid_ = gid;
      return "";
    }
    if (fallback < 0) {
      fallback = i;
      fallback_gid = gid;
    }
  }
  if (fallback >= 0) {
    gid_index_ = fallback;
    gid_ = fallback_gid;
    return "";
  }
  return device_name_ +
         " port 1 has no IPv4 GID (is an address configured "
         "on its netdev?)";
}

std::string LoopbackRc::Connect() {
  for (ibv_qp* qp : {qp_a_, qp_b_}) {
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_RESET;
    if (ibv_modify_qp(qp, &attr, IBV_QP_STATE) != 0)
      return Errno("ibv_modify_qp(RESET)", errno);
  }
  for (ibv_qp* qp : {qp_a_, qp_b_}) {
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_INIT;
    attr.pkey_index = 0;
    attr.port_num = port_;
    attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                           IBV_ACCESS_REMOTE_READ;
    if (ibv_modify_qp(qp, &attr,
                      IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
                          IBV_QP_ACCESS_FLAGS) != 0)
      return Errno("ibv_modify_qp(INIT)", errno);
  }
  for (ibv_qp* qp : {qp_a_, qp_b_}) {
    ibv_qp* peer = qp == qp_a_ ? qp_b_ : qp_a_;
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_RTR;
    attr.path_mtu = mtu_;
    attr.dest_qp_num = peer->qp_num;
    attr.rq_psn = 0;
    attr.max_dest_rd_atomic = 1;
    attr.min_rnr_timer = 12;
    attr.ah_attr.is_global = 1;
    attr.ah_attr.grh.dgid = gid_;  // ourselves
    attr.ah_attr.grh.sgid_index = uint8_t(gid_index_);
    attr.ah_attr.grh.hop_limit = 1;
    attr.ah_attr.dlid = lid_;
    attr.ah_attr.sl = 0;
    attr.ah_attr.src_path_bits = 0;
    attr.ah_attr.port_num = port_;
    if (ibv_modify_qp(qp, &attr,
                      IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
                          IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                          IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER) !=
        0)
      return Errno("ibv_modify_qp(RTR)", errno);
  }
  for (ibv_qp* qp : {qp_a_, qp_b_}) {
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_RTS;
    attr.timeout = 14;
    attr.retry_cnt = 7;
    attr.rnr_retry = 7;
    attr.sq_psn = 0;
    attr.max_rd_atomic = 1;
    if (ibv_modify_qp(qp, &attr,
                      IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                          IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                          IBV_QP_MAX_QP_RD_ATOMIC) != 0)
      return Errno("ibv_modify_qp(RTS)", errno);
  }
  // Whatever an earlier error flushed is of no interest any more.
  ibv_wc wc[8];
  while (ibv_poll_cq(cq_, 8, wc) > 0) {
  }
  return "";
}

std::string LoopbackRc::Close() {
  std::string problems;
  auto check = [&](int rc, const char* what) {
    if (rc == 0) return;
    const int err = rc > 0 ? rc : errno;
    problems += std::string(problems.empty() ? "" : "; ") + Errno(what, err);
    if (err == EBUSY && strcmp(what, "ibv_dealloc_pd") == 0)
      problems += " (an MR is still registered on the PD)";
  };
  if (qp_a_ != nullptr) check(ibv_destroy_qp(qp_a_), "ibv_destroy_qp");
  if (qp_b_ != nullptr) check(ibv_destroy_qp(qp_b_), "ibv_destroy_qp");
  if (cq_ != nullptr) check(ibv_destroy_cq(cq_), "ibv_destroy_cq");
  if (pd_ != nullptr) check(ibv_dealloc_pd(pd_), "ibv_dealloc_pd");
  qp_a_ = qp_b_ = nullptr;
  cq_ = nullptr;
  pd_ = nullptr;
  return problems;
}

LoopbackRc::~LoopbackRc() {
  Close();
  if (context_ != nullptr) ibv_close_device(context_);
  if (devices_ != nullptr) ibv_free_device_list(devices_);
}

std::string LoopbackRc::Describe() const {
  static const int kMtuBytes[] = {0, 256, 512, 1024, 2048, 4096};
  return device_name_ + " port " + std::to_string(port_) + " GID[" +
         std::to_string(gid_index_) + "] " + GidText(gid_) + ", MTU " +
         std::to_string(kMtuBytes[mtu_]);
}

std::string LoopbackRc::StatusText(int status) {
  if (status < 0) return "no completion";
  return ibv_wc_status_str(static_cast<ibv_wc_status>(status));
}

int LoopbackRc::Write(const void* local, size_t length, uint32_t lkey,
                      uint64_t remote_addr, uint32_t rkey, std::string* error) {
  return PostAndWait(IBV_WR_RDMA_WRITE, const_cast<void*>(local), length, lkey,
                     remote_addr, rkey, error);
}

int LoopbackRc::Read(void* local, size_t length, uint32_t lkey,
                     uint64_t remote_addr, uint32_t rkey, std::string* error) {
  return PostAndWait(IBV_WR_RDMA_READ, local, length, lkey, remote_addr, rkey,
                     error);
}

int LoopbackRc::PostAndWait(ibv_wr_opcode opcode, void* local, size_t length,
                            uint32_t lkey, uint64_t remote_addr, uint32_t rkey,
                            std::string* error) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t wr_id = next_wr_id_++;
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(local);
  sge.length = uint32_t(length);
  sge.lkey = lkey;
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = opcode;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  const int rc = ibv_post_send(qp_a_, &wr, &bad);
  if (rc != 0) {
    *error = Errno("ibv_post_send", rc);
    return -1;
  }
  const double deadline = Now() + kPollTimeoutSeconds;
  for (unsigned spins = 0;; ++spins) {
    ibv_wc wc{};
    const int n = ibv_poll_cq(cq_, 1, &wc);
    if (n < 0) {
      *error = "ibv_poll_cq failed";
      return -1;
    }
    if (n == 1 && wc.wr_id == wr_id) {
      if (wc.status != IBV_WC_SUCCESS) {
        *error = std::string(opcode == IBV_WR_RDMA_WRITE ? "RDMA WRITE"
                                                         : "RDMA READ") +
                 " completed with " + ibv_wc_status_str(wc.status) +
                 " (vendor error " + std::to_string(wc.vendor_err) + ")";
        const std::string m = Connect();
        if (!m.empty()) *error += "; reconnecting failed: " + m;
      }
      return wc.status;
    }
    if (n == 0 && (spins & 255) == 255) {
      if (Now() > deadline) {
        *error = "no completion within " + std::to_string(kPollTimeoutSeconds) +
                 " s";
        Connect();
        return -1;
      }
      usleep(50);
    }
  }
}

}  // namespace regcache_rdma_test
