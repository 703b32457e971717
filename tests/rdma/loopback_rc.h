// SPDX-License-Identifier: BSD-2-Clause
// LoopbackRc: real RDMA traffic inside one process, for the end-to-end tests.
//
// Opens an RDMA device (REGCACHE_TEST_DEVICE, else rxe0, else the first),
// allocates a protection domain, one completion queue and two RC queue pairs
// connected to each other through the device's own RoCE v2 IPv4 GID (found
// by scanning the GID table), so an RDMA WRITE or READ posted on one QP
// really travels through the device (for Soft-RoCE: through the kernel's
// rxe, the veth, and back) and lands in memory registered on the same PD.
//
// Nothing here uses gtest assertions: the helper also runs in forked
// children (after dropping privileges, or after fork with a cache), which
// report through a pipe. Errors come back as strings; "no device" is told
// apart from a failure so tests can GTEST_SKIP() with the reason.
//
// Thread safety: Write() and Read() may be called from any number of
// threads; they are serialised on an internal mutex (one QP, one CQ).
#ifndef REGCACHE_TESTS_RDMA_LOOPBACK_RC_H_
#define REGCACHE_TESTS_RDMA_LOOPBACK_RC_H_

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "gtest/gtest.h"

namespace regcache_rdma_test {

class LoopbackRc {
 public:
  enum class OpenResult { kOk, kNoDevice, kError };

  // Opens the device and connects the two QPs with the port's active MTU,
  // at most `max_mtu`. On kNoDevice or kError, *message says why and *out
  // is left empty.
  static OpenResult Open(std::unique_ptr<LoopbackRc>* out, std::string* message,
                         ibv_mtu max_mtu = IBV_MTU_1024);

  // True if some RDMA device is visible (reads sysfs only; opens nothing,
  // so it is safe before fork()).
  static bool AnyDevice(std::string* why_not);

  ~LoopbackRc();
  LoopbackRc(const LoopbackRc&) = delete;
  LoopbackRc& operator=(const LoopbackRc&) = delete;

  ibv_context* context() const { return context_; }
  ibv_pd* pd() const { return pd_; }
  const std::string& device_name() const { return device_name_; }
  int gid_index() const { return gid_index_; }
  // The QPs' path MTU in bytes.
  size_t path_mtu_bytes() const { return size_t{128} << mtu_; }
  // "rxe0 port 1 GID[1] ::ffff:192.168.77.1, MTU 1024" (for messages).
  std::string Describe() const;

  // RDMA WRITE of [local, local+length) (registered with `lkey`) to
  // `remote_addr` in the memory region of `rkey`, posted on QP A and
  // delivered to QP B; waits for the completion. Returns the completion's
  // status (IBV_WC_SUCCESS on success), or -1 if nothing completed (post
  // failed or timed out) with *error set. After an error completion the QPs
  // are reset and reconnected, so the next call works again.
  int Write(const void* local, size_t length, uint32_t lkey,
            uint64_t remote_addr, uint32_t rkey, std::string* error);
  // RDMA READ of `length` bytes at `remote_addr` (rkey) into `local` (lkey).
  int Read(void* local, size_t length, uint32_t lkey, uint64_t remote_addr,
           uint32_t rkey, std::string* error);

  // Destroys the QPs, the CQ and the PD now and says what failed: "" when
  // all went, else e.g. "ibv_dealloc_pd: Device or resource busy (an MR is
  // still registered on the PD)". The destructor does the same silently.
  std::string Close();

  // Completion status as text ("success", "remote access error", ...).
  static std::string StatusText(int status);

 private:
  LoopbackRc() = default;
  std::string Init(ibv_device* device, ibv_mtu max_mtu, bool* no_device);
  std::string FindRoceIpv4Gid();
  std::string Connect();
  int PostAndWait(ibv_wr_opcode opcode, void* local, size_t length,
                  uint32_t lkey, uint64_t remote_addr, uint32_t rkey,
                  std::string* error);

  ibv_device** devices_ = nullptr;
  ibv_context* context_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_qp* qp_a_ = nullptr;
  ibv_qp* qp_b_ = nullptr;
  std::string device_name_;
  uint8_t port_ = 1;
  int gid_index_ = -1;
  ibv_gid gid_{};
  ibv_mtu mtu_ = IBV_MTU_1024;
  uint16_t lid_ = 0;
  uint64_t next_wr_id_ = 1;
  std::mutex mu_;  // serialises posts and CQ polls
};

}  // namespace regcache_rdma_test

// In a test body or SetUp(): opens a LoopbackRc into `ptr` (a
// std::unique_ptr<LoopbackRc>), skipping the test when there is no device
// and failing it when the device does not work.
#define REGCACHE_OPEN_LOOPBACK_OR_SKIP(ptr)                                   \
  do {                                                                        \
    std::string open_message_;                                                \
    switch (::regcache_rdma_test::LoopbackRc::Open(&(ptr), &open_message_)) { \
      case ::regcache_rdma_test::LoopbackRc::OpenResult::kOk:                 \
        break;                                                                \
      case ::regcache_rdma_test::LoopbackRc::OpenResult::kNoDevice:           \
        GTEST_SKIP() << open_message_;                                        \
      case ::regcache_rdma_test::LoopbackRc::OpenResult::kError:              \
        FAIL() << open_message_;                                              \
    }                                                                         \
  } while (0)

#endif  // REGCACHE_TESTS_RDMA_LOOPBACK_RC_H_
