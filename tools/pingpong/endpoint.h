// SPDX-License-Identifier: BSD-2-Clause
// One end of the ping-pong: an RDMA device, a protection domain, one CQ and
// one RC QP, connected to the peer's QP (over RoCE with a GRH: the peer may
// be this very device, which is how the two processes of the default run
// talk over loopback), plus the rendezvous's control channel on the same
// QP: small SEND/RECV messages (RTS, CTS, STOP) through a ring of
// pre-registered slots, and the payload's RDMA WRITE with immediate, whose
// arrival consumes one of the same receives.
//
// Thread safety: none; one thread drives an Endpoint.
#ifndef REGCACHE_TOOLS_PINGPONG_ENDPOINT_H_
#define REGCACHE_TOOLS_PINGPONG_ENDPOINT_H_

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "options.h"

namespace regcache_pingpong {

struct DeviceOptions {
  std::string device;  // "" = the first device
  int ib_port = 1;
  int gid_index = -1;  // -1: the port's RoCE v2 IPv4 GID (none on IB)
  Polling polling = Polling::kAuto;
  uint32_t spin_us = 0;  // events: spin this long before sleeping
};

// What the peer needs to connect to us (exchanged over the socket).
struct QpInfo {
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint16_t lid = 0;
  uint8_t gid[16] = {};
  bool has_gid = false;
  int mtu = IBV_MTU_1024;  // enum ibv_mtu; the path uses the smaller one
  std::string ToText() const;
  static bool FromText(const std::string& text, QpInfo* out);
};

// A control message. 32 bytes on the wire.
struct Ctrl {
  enum Type : uint32_t { kRts = 1, kCts = 2, kStop = 3 };
  uint32_t type = 0;
  uint32_t seq = 0;   // message sequence number
  uint64_t size = 0;  // RTS: payload bytes
  uint64_t addr = 0;  // CTS: where to write
  uint32_t rkey = 0;  // CTS
  uint32_t pad = 0;
};
static_assert(sizeof(Ctrl) == 32);

// What arrived: a control message, or a payload (RDMA WRITE with
// immediate = its sequence number).
struct Arrival {
  bool is_data = false;
  Ctrl ctrl;           // !is_data
  uint32_t imm = 0;    // is_data
  uint32_t bytes = 0;  // is_data: byte_len of the completion
};

class Endpoint {
 public:
  // Opens the device, creates the QP (left in INIT with every control
  // receive posted) and probes ODP. On failure returns null, *error set.
  static std::unique_ptr<Endpoint> Open(const DeviceOptions& options,
                                        std::string* error);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  const QpInfo& local() const { return local_; }
  bool Connect(const QpInfo& remote, std::string* error);

  ibv_context* context() const { return context_; }
  ibv_pd* pd() const { return pd_; }
  const std::string& device_name() const { return device_name_; }
  // "rxe0 port 1 GID[1] ::ffff:192.168.77.1 RoCE v2, MTU 1024"
  std::string Describe() const;
  // "" if this device can run the odp mode, else why not, e.g.
  // "unsupported on rxe0 (odp_caps = 0)". On a device whose ODP has a known
  // defect (odp_defect.h) it is final only after Connect(), which knows
  // the path MTU.
  const std::string& odp_unavailable() const { return odp_unavailable_; }
  // The device's known ODP defect as libregcache names it ("" = none).
  // Where the odp mode runs despite one, every transfer must start on a
  // page boundary, and odp_note() says why the defect cannot strike.
  const std::string& odp_defect() const { return odp_defect_; }
  const std::string& odp_note() const { return odp_note_; }

  // Control messages (inline when the QP allows).
  bool Send(const Ctrl& ctrl, std::string* error);
  // Waits (busy-polling) for the next arrival, up to `timeout_s` seconds.
  bool Next(Arrival* out, double timeout_s, std::string* error);
  // RDMA WRITE with immediate from [local, local + length) (lkey) to
  // remote_addr (rkey); returns once it completed.
  bool WriteWithImm(const void* local, size_t length, uint32_t lkey,
                    uint64_t remote_addr, uint32_t rkey, uint32_t imm,
                    double timeout_s, std::string* error);

 private:
  Endpoint() = default;
  bool Init(const DeviceOptions& options, std::string* error);
  bool ChooseGid(const DeviceOptions& options, std::string* error);
  void ProbeOdp();
  bool PostRecv(uint32_t slot, std::string* error);
  // Polls once; queues arrivals, retires sends. Returns how many
  // completions it handled, or -1 (bad completion) with *error set.
  int Poll(std::string* error);
  // Polls (and waits as polling_ says) until done() or the timeout.
  bool Wait(const std::function<bool()>& done, double timeout_s,
            const char* what, std::string* error);

  static constexpr uint32_t kRecvSlots = 32;
  static constexpr uint32_t kSendSlots = 32;
  static constexpr uint64_t kWriteWrId = 1ull << 62;
  static constexpr uint64_t kSendWrId = 1ull << 61;
  static constexpr double kSendTimeout = 60;

  ibv_device** devices_ = nullptr;
  ibv_context* context_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* channel_ = nullptr;  // Polling::kEvents only
  ibv_cq* cq_ = nullptr;
  Polling polling_ = Polling::kBusy;  // resolved: never kAuto
  bool software_ = false;             // a virtual device (rxe, siw)
  bool armed_ = false;                // a completion event is requested
  double spin_seconds_ = 0;  // Polling::kEvents: spin this long, then sleep
  double spin_until_ = 0;
  ibv_qp* qp_ = nullptr;
  ibv_mr* ctrl_mr_ = nullptr;   // kRecvSlots + kSendSlots Ctrl slots
  Ctrl* ctrl_slots_ = nullptr;  // receive slots first, then send slots
  std::string device_name_;
  int ib_port_ = 1;
  int gid_index_ = -1;
  std::string gid_type_;
  ibv_gid gid_{};
  bool use_grh_ = false;
  ibv_mtu mtu_ = IBV_MTU_1024;  // the port's active MTU
  bool inline_ctrl_ = false;
  QpInfo local_;
  std::string odp_unavailable_;
  std::string odp_defect_;
  std::string odp_note_;

  std::deque<Arrival> arrivals_;
  uint64_t sends_posted_ = 0, sends_done_ = 0;
  uint64_t writes_posted_ = 0, writes_done_ = 0;
};

}  // namespace regcache_pingpong

#endif  // REGCACHE_TOOLS_PINGPONG_ENDPOINT_H_
