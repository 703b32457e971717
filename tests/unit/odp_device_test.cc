// SPDX-License-Identifier: BSD-2-Clause
// The ODP probe and mode policy against the real device (the first one
// libibverbs lists). The host has none, so every test skips there with "no
// RDMA device"; in the qemu+rxe rig (tests/vm/run-in-vm.sh --
// build/tests/unit/odp_device_test) rxe0 on Linux 6.1 has no on-demand
// paging, and the tests check that the probe, raw verbs and the cache all
// agree on that: auto pins and says why, odp fails at create. The real ODP
// path runs only on a device with ODP (mlx5, or rxe from about Linux 6.15)
// and otherwise skips with the reason.
#include <errno.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "odp/mode_policy.h"
#include "odp/odp_probe.h"
#include "odp/odp_quirks.h"
#include "odp/verbs_ops.h"
#include "regcache/ibverbs.h"
#include "regcache/regcache.h"
#include "verbs_fixture.h"

namespace {

using regcache_internal::DefaultVerbsOps;
using regcache_internal::DescribeOdp;
using regcache_internal::FindOdpQuirk;
using regcache_internal::kAutoOdpAccess;
using regcache_internal::OdpCaps;
using regcache_internal::OdpCovers;
using regcache_internal::OdpQuirk;
using regcache_internal::OdpTransport;
using regcache_internal::ProbeOdp;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
constexpr size_t kBufferPages = 8;
constexpr uint32_t kRw = REGCACHE_ACCESS_LOCAL_WRITE |
                         REGCACHE_ACCESS_REMOTE_WRITE |
                         REGCACHE_ACCESS_REMOTE_READ;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The running kernel's major.minor, e.g. 601 for 6.1.0-56-amd64.
int KernelVersion() {
  utsname u{};
  if (uname(&u) != 0) return 0;
  int major = 0, minor = 0;
  if (sscanf(u.release, "%d.%d", &major, &minor) != 2) return 0;
  return major * 100 + minor;
}

class OdpDevice : public regcache_test::VerbsDeviceTest {
 protected:
  void SetUp() override {
    OpenDevice(
        "run in the qemu+rxe rig "
        "(tests/vm/run-in-vm.sh -- build/tests/unit/odp_device_test)",
        kBufferPages * kPage);
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(regcache_registrar_ibverbs(pd_, &registrar_), 0);
    ASSERT_EQ(ProbeOdp(context_, DefaultVerbsOps(), &caps_), 0)
        << DescribeOdp(caps_);
    device_ = caps_.device;
    is_rxe_ = device_.rfind("rxe", 0) == 0;
    printf("odp probe: %s\n", DescribeOdp(caps_).c_str());
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      EXPECT_EQ(regcache_destroy(cache_), 0);
    }
    VerbsDeviceTest::TearDown();
  }

  // What a test of the real ODP path says on a device without it.
  std::string NoOdpSkipReason() const {
    return device_ + " has no on-demand paging (odp_caps = 0" +
           (is_rxe_ ? "; rxe gained ODP around Linux 6.15)" : ")");
  }

  int Create(regcache_mode mode) {
    regcache_config cfg;
    EXPECT_EQ(regcache_config_init(&cfg), 0);
    cfg.mode = mode;
    cfg.monitor = REGCACHE_MONITOR_NONE;  // the mode is under test, not this
    return regcache_create(&registrar_, &cfg, &cache_);
  }

  regcache_registrar registrar_{};
  OdpCaps caps_;
  std::string device_;
  bool is_rxe_ = false;
  regcache_t* cache_ = nullptr;
};

TEST_F(OdpDevice, RxeBeforeLinux615HasNoOdp) {
  if (!is_rxe_) GTEST_SKIP() << device_ << " is not rxe";
  if (KernelVersion() >= 615) {
    GTEST_SKIP() << "kernel " << KernelVersion() / 100 << "."
                 << KernelVersion() % 100 << ": rxe may have ODP";
  }
  EXPECT_FALSE(caps_.supported()) << DescribeOdp(caps_);
  EXPECT_EQ(caps_.general_caps, 0u);
  EXPECT_EQ(caps_.rc_caps, 0u);
  EXPECT_EQ(DescribeOdp(caps_),
            device_ + ": no on-demand paging (odp_caps.general_caps = 0)");
}

TEST_F(OdpDevice, ProbeAgreesWithAnOnDemandRegistration) {
  errno = 0;
  ibv_mr* mr = ibv_reg_mr(pd_, buffer_, kBufferPages * kPage,
                          IBV_ACCESS_ON_DEMAND | IBV_ACCESS_LOCAL_WRITE);
  const int err = errno;
  if (caps_.supported()) {
    ASSERT_NE(mr, nullptr) << DescribeOdp(caps_)
                           << ", yet ibv_reg_mr(ON_DEMAND): " << strerror(err);
    EXPECT_EQ(ibv_dereg_mr(mr), 0);
  } else {
    EXPECT_EQ(mr, nullptr) << DescribeOdp(caps_)
                           << ", yet ibv_reg_mr(ON_DEMAND) worked";
    if (mr != nullptr) ibv_dereg_mr(mr);
    if (is_rxe_) {
      // 6.1 says EINVAL, 6.12 EOPNOTSUPP.
      EXPECT_TRUE(err == EINVAL || err == EOPNOTSUPP) << strerror(err);
    }
  }
}

TEST_F(OdpDevice, AdviseMrIsUnsupportedWithoutOdp) {
  if (caps_.supported())
    GTEST_SKIP() << device_ << " has ODP: " << DescribeOdp(caps_);
  ibv_mr* mr =
      ibv_reg_mr(pd_, buffer_, kPage, static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  ASSERT_NE(mr, nullptr) << strerror(errno);
  ibv_sge sge{reinterpret_cast<uintptr_t>(buffer_), uint32_t(kPage), mr->lkey};
  const int ret = ibv_advise_mr(pd_, IBV_ADVISE_MR_ADVICE_PREFETCH, 0, &sge, 1);
  EXPECT_NE(ret, 0);
  if (is_rxe_) {
    EXPECT_EQ(ret, EOPNOTSUPP) << strerror(ret);
  }
  EXPECT_EQ(ibv_dereg_mr(mr), 0);
}

TEST_F(OdpDevice, AutoPinsWithoutOdpAndSaysWhy) {
  if (caps_.supported())
    GTEST_SKIP() << device_ << " has ODP: " << DescribeOdp(caps_);
  ASSERT_EQ(Create(REGCACHE_MODE_AUTO), 0) << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_PIN);
  EXPECT_EQ(std::string(s.mode_reason), DescribeOdp(caps_));
  EXPECT_TRUE(Contains(s.mode_reason, "no on-demand paging")) << s.mode_reason;
  regcache_print_stats(cache_, stdout);
  // And the pinned path works on this device.
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, buffer_, kPage, kRw, &h), 0)
      << regcache_last_error();
  EXPECT_NE(regcache_handle_mr(h)->rkey, 0u);
  EXPECT_EQ(regcache_put(cache_, h), 0);
}

TEST_F(OdpDevice, OdpModeFailsWithoutOdp) {
  if (caps_.supported())
    GTEST_SKIP() << device_ << " has ODP: " << DescribeOdp(caps_);
  EXPECT_EQ(Create(REGCACHE_MODE_ODP), -EOPNOTSUPP);
  EXPECT_EQ(cache_, nullptr);
  const std::string msg = regcache_last_error();
  EXPECT_TRUE(Contains(msg, "mode odp")) << msg;
  EXPECT_TRUE(Contains(msg, device_ + ": no on-demand paging")) << msg;
}

TEST_F(OdpDevice, OdpCacheRegistersOnDemandAndSurvivesRemap) {
  if (!caps_.supported()) GTEST_SKIP() << NoOdpSkipReason();
  ASSERT_EQ(Create(REGCACHE_MODE_ODP), 0) << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_ODP);
  EXPECT_EQ(s.monitor, REGCACHE_MONITOR_NONE);
  regcache_print_stats(cache_, stdout);
  const uint32_t access = OdpCovers(caps_, OdpTransport::kRc, kRw, nullptr)
                              ? kRw
                              : uint32_t{REGCACHE_ACCESS_REMOTE_READ};
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, buffer_, 4 * kPage, access, &h), 0)
      << regcache_last_error();
  const uint32_t rkey = regcache_handle_mr(h)->rkey;
  ASSERT_EQ(regcache_put(cache_, h), 0);
  // New pages at the same address: the ODP MR faults them in, so the cached
  // registration is returned again, without a monitor and without stale data.
  ASSERT_EQ(munmap(buffer_, 4 * kPage), 0);
  ASSERT_EQ(mmap(buffer_, 4 * kPage, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0),
            buffer_);
  ASSERT_EQ(regcache_get(cache_, buffer_, 4 * kPage, access, &h), 0)
      << regcache_last_error();
  EXPECT_EQ(regcache_handle_mr(h)->rkey, rkey);
  ASSERT_EQ(regcache_put(cache_, h), 0);
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.registrations, 1u);
}

TEST_F(OdpDevice, AutoChoosesOdpWhenTheDeviceCoversIt) {
  if (!caps_.supported()) GTEST_SKIP() << NoOdpSkipReason();
  std::string why;
  const bool covered =
      OdpCovers(caps_, OdpTransport::kRc, kAutoOdpAccess, &why);
  const OdpQuirk* quirk = FindOdpQuirk(caps_);
  ASSERT_EQ(Create(REGCACHE_MODE_AUTO), 0) << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode,
            covered && quirk == nullptr ? REGCACHE_MODE_ODP : REGCACHE_MODE_PIN)
      << s.mode_reason;
  if (!covered) {
    EXPECT_EQ(std::string(s.mode_reason), why);
  } else if (quirk != nullptr) {
    EXPECT_TRUE(
        Contains(s.mode_reason, std::string("known defect ") + quirk->name))
        << s.mode_reason;
    printf("known device defect %s: %s: auto pinned\n", quirk->name,
           quirk->defect);
  }
}

}  // namespace
