// SPDX-License-Identifier: BSD-2-Clause
// Tests of regcache_registrar_ibverbs() on the first RDMA device. The host
// usually has none, so these skip there; the qemu+rxe rig runs this same
// binary in the guest (ctest -L vm). Self-contained: it needs nothing but
// libibverbs and a device.
#include <errno.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "regcache/ibverbs.h"
#include "regcache/regcache.h"
#include "verbs_fixture.h"

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
constexpr size_t kBufferPages = 16;

TEST(RegistrarIbverbsCreate, RejectsNullPd) {
  regcache_registrar r{};
  EXPECT_EQ(regcache_registrar_ibverbs(nullptr, &r), -EINVAL);
  EXPECT_EQ(r.reg, nullptr) << "out must be left alone on failure";
  EXPECT_NE(std::string(regcache_last_error()).find("pd"), std::string::npos)
      << "message: " << regcache_last_error();
  auto* not_dereferenced = reinterpret_cast<ibv_pd*>(uintptr_t{0x1000});
  EXPECT_EQ(regcache_registrar_ibverbs(not_dereferenced, nullptr), -EINVAL);
}

class RegistrarIbverbs : public regcache_test::VerbsDeviceTest {
 protected:
  void SetUp() override {
    OpenDevice("run in the qemu+rxe rig (ctest -L vm)", kBufferPages * kPage);
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(ibv_query_device(context_, &device_attr_), 0);
    ASSERT_EQ(regcache_registrar_ibverbs(pd_, &r_), 0);
  }

  // reg as the cache calls it: the cache fills addr/length/access, then reg.
  int Reg(void* addr, size_t length, uint32_t access, regcache_mr* mr) {
    *mr = regcache_mr{};
    mr->addr = addr;
    mr->length = length;
    mr->access = access;
    return r_.reg(r_.ctx, addr, length, access, mr);
  }

  ibv_device_attr device_attr_{};
  regcache_registrar r_{};
};

TEST_F(RegistrarIbverbs, KeysAreTheIbvMrKeys) {
  EXPECT_STREQ(r_.name, "ibverbs");
  regcache_mr mr;
  const uint32_t access =
      REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_READ;
  ASSERT_EQ(Reg(buffer_, 4 * kPage, access, &mr), 0);
  auto* ibv = static_cast<ibv_mr*>(mr.backend);
  ASSERT_NE(ibv, nullptr);
  EXPECT_EQ(mr.lkey, ibv->lkey);
  EXPECT_EQ(mr.rkey, ibv->rkey);
  EXPECT_EQ(ibv->addr, buffer_);
  EXPECT_EQ(ibv->length, 4 * kPage);
  EXPECT_EQ(ibv->pd, pd_);
  EXPECT_EQ(mr.access, access) << "nothing to widen";
  EXPECT_EQ(mr.key, 0u);
  EXPECT_EQ(mr.desc, nullptr);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
  EXPECT_EQ(mr.backend, nullptr);
}

TEST_F(RegistrarIbverbs, ReadOnlyRegistrationWorks) {
  regcache_mr mr;
  ASSERT_EQ(Reg(buffer_, kPage, 0, &mr), 0);
  EXPECT_EQ(mr.access, 0u);
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
}

// Verbs refuses remote write without local write (EINVAL); the registrar
// adds it and reports it.
TEST_F(RegistrarIbverbs, RemoteWriteIsWidenedWithLocalWrite) {
  regcache_mr mr;
  ASSERT_EQ(Reg(buffer_, kPage, REGCACHE_ACCESS_REMOTE_WRITE, &mr), 0);
  EXPECT_EQ(mr.access, static_cast<uint32_t>(REGCACHE_ACCESS_REMOTE_WRITE |
                                             REGCACHE_ACCESS_LOCAL_WRITE));
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
}

TEST_F(RegistrarIbverbs, RemoteAtomicIsWidenedWithLocalWrite) {
  if (device_attr_.atomic_cap == IBV_ATOMIC_NONE) {
    GTEST_SKIP() << ibv_get_device_name(devices_[0]) << " has no atomics";
  }
  regcache_mr mr;
  ASSERT_EQ(Reg(buffer_, kPage, REGCACHE_ACCESS_REMOTE_ATOMIC, &mr), 0);
  EXPECT_EQ(mr.access, static_cast<uint32_t>(REGCACHE_ACCESS_REMOTE_ATOMIC |
                                             REGCACHE_ACCESS_LOCAL_WRITE));
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), 0);
}

TEST_F(RegistrarIbverbs, UnmappedAddressFailsWithEfault) {
  void* hole = mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(hole, MAP_FAILED);
  ASSERT_EQ(munmap(hole, 4 * kPage), 0);
  regcache_mr mr;
  EXPECT_EQ(Reg(hole, 4 * kPage, REGCACHE_ACCESS_LOCAL_WRITE, &mr), -EFAULT);
  EXPECT_EQ(mr.backend, nullptr);
}

TEST_F(RegistrarIbverbs, RejectsUnknownAccessBits) {
  regcache_mr mr;
  EXPECT_EQ(Reg(buffer_, kPage, 1u << 30, &mr), -EINVAL);
  EXPECT_EQ(mr.backend, nullptr);
}

TEST_F(RegistrarIbverbs, DeregOfAnEmptyHandleIsRejected) {
  regcache_mr mr{};
  EXPECT_EQ(r_.dereg(r_.ctx, &mr), -EINVAL);
}

TEST_F(RegistrarIbverbs, ConcurrentRegistrationsFromFourThreads) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        regcache_mr mr;
        // Overlapping ranges: every thread includes page 0.
        if (Reg(buffer_, (t + 1) * kPage,
                REGCACHE_ACCESS_REMOTE_READ | REGCACHE_ACCESS_REMOTE_WRITE,
                &mr) != 0) {
          failures++;
          continue;
        }
        if (r_.dereg(r_.ctx, &mr) != 0) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
