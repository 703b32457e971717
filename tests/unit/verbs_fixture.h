// SPDX-License-Identifier: BSD-2-Clause
// The fixture the tests of the ibverbs paths share: the first RDMA device
// libibverbs lists, a protection domain on it, and an anonymous buffer
// written once (so no page is missing). The host usually has no device; the
// qemu+rxe rig runs the same binaries in the guest (ctest -L vm).
#ifndef REGCACHE_TESTS_UNIT_VERBS_FIXTURE_H_
#define REGCACHE_TESTS_UNIT_VERBS_FIXTURE_H_

#include <errno.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstring>

#include "gtest/gtest.h"

namespace regcache_test {

class VerbsDeviceTest : public ::testing::Test {
 protected:
  // Opens the device and maps `buffer_bytes`. Without a device the test is
  // skipped with "no RDMA device: " + `where_to_run`. The caller's SetUp()
  // returns when IsSkipped() or HasFatalFailure() afterwards.
  void OpenDevice(const char* where_to_run, size_t buffer_bytes) {
    int count = 0;
    devices_ = ibv_get_device_list(&count);
    if (devices_ == nullptr || count == 0) {
      GTEST_SKIP() << "no RDMA device: " << where_to_run;
    }
    context_ = ibv_open_device(devices_[0]);
    ASSERT_NE(context_, nullptr)
        << "ibv_open_device(" << ibv_get_device_name(devices_[0])
        << "): " << strerror(errno);
    pd_ = ibv_alloc_pd(context_);
    ASSERT_NE(pd_, nullptr) << "ibv_alloc_pd: " << strerror(errno);
    void* p = mmap(nullptr, buffer_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED) << strerror(errno);
    buffer_ = static_cast<char*>(p);
    buffer_bytes_ = buffer_bytes;
    memset(buffer_, 0x5a, buffer_bytes);
  }

  // Frees what OpenDevice() made. Deallocating the protection domain fails
  // while an MR on it is still registered: that is reported as a leak.
  void TearDown() override {
    if (buffer_ != nullptr) munmap(buffer_, buffer_bytes_);
    if (pd_ != nullptr) {
      EXPECT_EQ(ibv_dealloc_pd(pd_), 0) << "an MR leaked";
    }
    if (context_ != nullptr) ibv_close_device(context_);
    if (devices_ != nullptr) ibv_free_device_list(devices_);
  }

  ibv_device** devices_ = nullptr;
  ibv_context* context_ = nullptr;
  ibv_pd* pd_ = nullptr;
  char* buffer_ = nullptr;
  size_t buffer_bytes_ = 0;
};

}  // namespace regcache_test

#endif  // REGCACHE_TESTS_UNIT_VERBS_FIXTURE_H_
