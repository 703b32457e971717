// SPDX-License-Identifier: BSD-2-Clause
// Tests of the ODP probe, the ODP registrar, the pin/ODP mode policy and its
// integration into the cache, all against FakeVerbs (odp_fake_verbs.h), a
// fake verbs layer: no device is needed. odp_device_test.cc runs the same
// code against the real device in the qemu+rxe rig.
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "odp/mode_policy.h"
#include "odp/odp_probe.h"
#include "odp/odp_registrar.h"
#include "odp_fake_verbs.h"
#include "regcache/ibverbs.h"
#include "regcache/regcache.h"

namespace {

using regcache_internal::DescribeOdp;
using regcache_internal::ModeDecision;
using regcache_internal::OdpCaps;
using regcache_internal::OdpCovers;
using regcache_internal::OdpOptions;
using regcache_internal::OdpPrefetch;
using regcache_internal::OdpRegistrar;
using regcache_internal::OdpTransport;
using regcache_internal::ProbeOdp;
using regcache_internal::ResolveMode;
using regcache_internal::ScopedVerbsOpsForTesting;
using regcache_test::FakeVerbs;
using Op = FakeVerbs::Op;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

constexpr uint32_t kRcSendRecvWriteRead =
    IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE |
    IBV_ODP_SUPPORT_READ;
// What Soft-RoCE (rdma_rxe) reports as its vendor and part, and the RC ODP
// operations its ODP claims in Linux 7.3.
constexpr uint32_t kRxeVendorId = 0xFFFFFF, kRxeVendorPartId = 0;
constexpr uint32_t kRxeRcOdp =
    kRcSendRecvWriteRead | IBV_ODP_SUPPORT_ATOMIC | IBV_ODP_SUPPORT_SRQ_RECV;

constexpr uint32_t kRw = REGCACHE_ACCESS_LOCAL_WRITE |
                         REGCACHE_ACCESS_REMOTE_WRITE |
                         REGCACHE_ACCESS_REMOTE_READ;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

OdpCaps Probe(FakeVerbs& fake) {
  OdpCaps caps;
  ProbeOdp(fake.context(), *fake.ops(), &caps);
  return caps;
}

regcache_config Config(regcache_mode mode,
                       regcache_monitor_kind monitor = REGCACHE_MONITOR_NONE) {
  regcache_config cfg{};
  cfg.mode = mode;
  cfg.monitor = monitor;
  return cfg;
}

regcache_registrar IbverbsOver(FakeVerbs& fake) {
  regcache_registrar r{};
  EXPECT_EQ(regcache_registrar_ibverbs(fake.pd(), &r), 0);
  return r;
}

// reg as the cache calls it.
int Reg(const regcache_registrar& r, void* addr, size_t length, uint32_t access,
        regcache_mr* mr) {
  *mr = regcache_mr{};
  mr->addr = addr;
  mr->length = length;
  mr->access = access;
  return r.reg(r.ctx, addr, length, access, mr);
}

// Sets or unsets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    if (value != nullptr)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// ---------------------------------------------------------------------------
// The probe

TEST(OdpProbe, NoOdpIsDescribedAsSuch) {
  FakeVerbs fake("rxe0");
  fake.SetNoOdp();
  OdpCaps caps = Probe(fake);
  EXPECT_FALSE(caps.supported());
  EXPECT_FALSE(caps.implicit());
  EXPECT_EQ(DescribeOdp(caps),
            "rxe0: no on-demand paging (odp_caps.general_caps = 0)");
  EXPECT_EQ(fake.count(Op::kQueryDeviceEx), 1u);
}

TEST(OdpProbe, DescribesExplicitImplicitAndEachTransport) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(kRcSendRecvWriteRead | IBV_ODP_SUPPORT_ATOMIC, /*implicit=*/true,
              /*ud=*/IBV_ODP_SUPPORT_SEND);
  OdpCaps caps = Probe(fake);
  EXPECT_TRUE(caps.supported());
  EXPECT_TRUE(caps.implicit());
  EXPECT_EQ(caps.max_mr_size, uint64_t{1} << 40);
  EXPECT_EQ(DescribeOdp(caps),
            "mlx5_0: ODP explicit+implicit; RC: send recv write read atomic; "
            "UD: send");

  fake.SetOdp(IBV_ODP_SUPPORT_SEND, /*implicit=*/false);
  fake.set_xrc_caps(IBV_ODP_SUPPORT_SRQ_RECV);
  EXPECT_EQ(DescribeOdp(Probe(fake)),
            "mlx5_0: ODP explicit; RC: send; XRC: srq_recv");
}

TEST(OdpProbe, QueryFailureIsReportedNotTakenForNoOdp) {
  FakeVerbs fake("dev0");
  fake.set_query_result(EOPNOTSUPP);
  OdpCaps caps;
  EXPECT_EQ(ProbeOdp(fake.context(), *fake.ops(), &caps), -EOPNOTSUPP);
  EXPECT_EQ(caps.query_error, -EOPNOTSUPP);
  EXPECT_FALSE(caps.supported());
  EXPECT_TRUE(
      Contains(DescribeOdp(caps), "dev0: cannot query ODP capabilities"))
      << DescribeOdp(caps);
}

TEST(OdpCovers, EachAccessBitNeedsItsRcOperation) {
  FakeVerbs fake("mlx5_0");
  struct Case {
    uint32_t access;
    uint32_t needed;
  };
  const Case cases[] = {
      {0, IBV_ODP_SUPPORT_SEND},
      {REGCACHE_ACCESS_LOCAL_WRITE,
       IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV},
      {REGCACHE_ACCESS_REMOTE_WRITE,
       IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_WRITE},
      {REGCACHE_ACCESS_REMOTE_READ,
       IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_READ},
      {REGCACHE_ACCESS_REMOTE_ATOMIC,
       IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_ATOMIC},
  };
  for (const Case& c : cases) {
    // Exactly the needed bits cover it; dropping any one of them does not.
    fake.SetOdp(c.needed, false);
    EXPECT_TRUE(OdpCovers(Probe(fake), OdpTransport::kRc, c.access, nullptr))
        << "access 0x" << std::hex << c.access;
    for (uint32_t bit = 1; bit <= IBV_ODP_SUPPORT_SRQ_RECV; bit <<= 1) {
      if ((c.needed & bit) == 0) continue;
      fake.SetOdp(c.needed & ~bit, false);
      EXPECT_FALSE(OdpCovers(Probe(fake), OdpTransport::kRc, c.access, nullptr))
          << "access 0x" << std::hex << c.access << " without bit 0x" << bit;
    }
    // The bits on another transport do not count for RC.
    fake.SetOdp(0, false, /*ud=*/FakeVerbs::kRcAll);
    EXPECT_FALSE(OdpCovers(Probe(fake), OdpTransport::kRc, c.access, nullptr));
    EXPECT_TRUE(OdpCovers(Probe(fake), OdpTransport::kUd, c.access, nullptr));
  }
}

TEST(OdpCovers, SaysWhatIsMissing) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(kRcSendRecvWriteRead, false);
  std::string why;
  EXPECT_FALSE(OdpCovers(Probe(fake), OdpTransport::kRc,
                         REGCACHE_ACCESS_REMOTE_ATOMIC, &why));
  EXPECT_EQ(why,
            "mlx5_0: ODP on RC lacks atomic (needed for remote atomic); "
            "rc_odp_caps = send recv write read");

  fake.SetNoOdp();
  EXPECT_FALSE(OdpCovers(Probe(fake), OdpTransport::kRc, 0, &why));
  EXPECT_EQ(why, "mlx5_0: no on-demand paging (odp_caps.general_caps = 0)");
}

// ---------------------------------------------------------------------------
// The mode policy

TEST(ModePolicy, AutoWithoutOdpPinsAndSaysWhy) {
  FakeVerbs fake("rxe0");
  fake.SetNoOdp();
  const regcache_registrar in = IbverbsOver(fake);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(in, fake.pd(),
                        Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_UFFD),
                        *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_PIN);
  EXPECT_EQ(d.reason, "rxe0: no on-demand paging (odp_caps.general_caps = 0)");
  EXPECT_EQ(d.registrar.reg, in.reg) << "pin keeps the caller's registrar";
  EXPECT_EQ(d.registrar.ctx, in.ctx);
  EXPECT_EQ(d.monitor, REGCACHE_MONITOR_UFFD)
      << "pin keeps the configured monitor";
  EXPECT_EQ(d.odp, nullptr);
  EXPECT_EQ(fake.count(Op::kRegMr), 0u);
}

TEST(ModePolicy, OdpRequestedWithoutOdpFailsWithWhatIsMissing) {
  FakeVerbs fake("rxe0");
  fake.SetNoOdp();
  ModeDecision d;
  EXPECT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(), Config(REGCACHE_MODE_ODP),
                        *fake.ops(), &d),
            -EOPNOTSUPP);
  const std::string msg = regcache_last_error();
  EXPECT_TRUE(Contains(msg, "mode odp")) << msg;
  EXPECT_TRUE(Contains(msg, "rxe0: no on-demand paging")) << msg;
  EXPECT_EQ(fake.count(Op::kRegMr), 0u);
}

TEST(ModePolicy, AutoChoosesOdpWhenRcWriteAndReadAreCovered) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(kRcSendRecvWriteRead, /*implicit=*/false);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(),
                        Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_KMOD),
                        *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_ODP);
  EXPECT_EQ(d.reason,
            "mlx5_0 supports ODP for RC send/recv/write/read; explicit MRs");
  EXPECT_EQ(d.monitor, REGCACHE_MONITOR_NONE) << "ODP MRs never go stale";
  ASSERT_NE(d.odp, nullptr);
  EXPECT_STREQ(d.registrar.name, "ibverbs-odp");
  EXPECT_EQ(d.registrar.ctx, d.odp.get());
  EXPECT_EQ(fake.count(Op::kRegMr), 0u) << "explicit mode registers on demand";
}

TEST(ModePolicy, AutoPinsWhenRcWriteIsNotCovered) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(
      IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_READ, false,
      /*ud=*/FakeVerbs::kRcAll);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(),
                        Config(REGCACHE_MODE_AUTO), *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_PIN);
  EXPECT_EQ(d.reason,
            "mlx5_0: ODP on RC lacks write (needed for remote write); "
            "rc_odp_caps = send recv read");
}

TEST(ModePolicy, OdpRequestedUsesPartialOdp) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_READ, false);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(), Config(REGCACHE_MODE_ODP),
                        *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_ODP);
  EXPECT_EQ(d.reason,
            "requested; mlx5_0 supports ODP for RC send/read; explicit MRs");

  fake.SetOdp(IBV_ODP_SUPPORT_READ, false);  // not even sends
  EXPECT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(), Config(REGCACHE_MODE_ODP),
                        *fake.ops(), &d),
            -EOPNOTSUPP);
  EXPECT_TRUE(Contains(regcache_last_error(), "lacks send"))
      << regcache_last_error();
}

TEST(ModePolicy, AutoPinsRxeWhoseOdpMisplacesData) {
  FakeVerbs fake("rxe0");
  fake.set_vendor(kRxeVendorId, kRxeVendorPartId);
  fake.SetOdp(kRxeRcOdp, /*implicit=*/false, /*ud=*/IBV_ODP_SUPPORT_SEND);
  const regcache_registrar in = IbverbsOver(fake);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(in, fake.pd(),
                        Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_KMOD),
                        *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_PIN);
  EXPECT_EQ(d.reason,
            "rxe0: ODP not used, known defect rxe-odp-page-offset (unaligned "
            "RDMA lands misplaced); REGCACHE_MODE=odp overrides");
  EXPECT_LT(d.reason.size(),
            sizeof(static_cast<struct regcache_stats*>(nullptr)->mode_reason));
  EXPECT_EQ(d.registrar.reg, in.reg) << "pin keeps the caller's registrar";
  EXPECT_EQ(d.monitor, REGCACHE_MONITOR_KMOD)
      << "pin keeps the configured monitor";
  EXPECT_EQ(d.odp, nullptr);
  EXPECT_EQ(d.warning, "") << "auto quietly avoids the defect";
  EXPECT_EQ(fake.count(Op::kRegMr), 0u);
}

TEST(ModePolicy, KnownDefectIsRecognisedByVendorNotByName) {
  FakeVerbs renamed("roce_lab");  // rdma link add roce_lab type rxe ...
  renamed.set_vendor(kRxeVendorId, kRxeVendorPartId);
  renamed.SetOdp(kRxeRcOdp, false);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(IbverbsOver(renamed), renamed.pd(),
                        Config(REGCACHE_MODE_AUTO), *renamed.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_PIN) << d.reason;

  FakeVerbs not_rxe("rxe0");  // named like rxe, but a Mellanox device
  not_rxe.set_vendor(0x02c9, 4123);
  not_rxe.SetOdp(kRxeRcOdp, false);
  ASSERT_EQ(ResolveMode(IbverbsOver(not_rxe), not_rxe.pd(),
                        Config(REGCACHE_MODE_AUTO), *not_rxe.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_ODP) << d.reason;
}

TEST(ModePolicy, OdpRequestedOnADefectiveDeviceIsHonouredWithAWarning) {
  FakeVerbs fake("rxe0");
  fake.set_vendor(kRxeVendorId, kRxeVendorPartId);
  fake.SetOdp(kRxeRcOdp, false);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(),
                        Config(REGCACHE_MODE_ODP, REGCACHE_MONITOR_AUTO),
                        *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_ODP);
  EXPECT_EQ(d.reason,
            "requested; known defect rxe-odp-page-offset; rxe0 supports ODP "
            "for RC send/recv/write/read/atomic; explicit MRs");
  EXPECT_TRUE(Contains(d.warning,
                       "rxe0, whose ODP has a known defect "
                       "(rxe-odp-page-offset)"))
      << d.warning;
  EXPECT_TRUE(Contains(d.warning, "data misplaced")) << d.warning;
  EXPECT_EQ(d.monitor_reason, "") << "auto was asked for: nothing set aside";
}

TEST(ModePolicy, OdpSaysWhenItSetsARequestedMonitorAside) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(kRcSendRecvWriteRead, false);
  for (regcache_monitor_kind requested :
       {REGCACHE_MONITOR_KMOD, REGCACHE_MONITOR_UFFD}) {
    ModeDecision d;
    ASSERT_EQ(
        ResolveMode(IbverbsOver(fake), fake.pd(),
                    Config(REGCACHE_MODE_AUTO, requested), *fake.ops(), &d),
        0);
    ASSERT_EQ(d.mode, REGCACHE_MODE_ODP);
    EXPECT_EQ(d.monitor, REGCACHE_MONITOR_NONE);
    const std::string name = regcache_monitor_name(requested);
    EXPECT_EQ(d.monitor_reason, "none, not the requested " + name +
                                    ": ODP registrations never go stale");
    EXPECT_TRUE(Contains(
        d.warning, "monitor " + name + " requested, but mode odp uses none"))
        << d.warning;
  }
  for (regcache_monitor_kind quiet :
       {REGCACHE_MONITOR_AUTO, REGCACHE_MONITOR_NONE}) {
    ModeDecision d;
    ASSERT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(),
                          Config(REGCACHE_MODE_AUTO, quiet), *fake.ops(), &d),
              0);
    EXPECT_EQ(d.monitor_reason, "");
    EXPECT_EQ(d.warning, "");
  }
}

TEST(ModePolicy, PinNeverProbes) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(FakeVerbs::kRcAll, true);
  ModeDecision d;
  ASSERT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(), Config(REGCACHE_MODE_PIN),
                        *fake.ops(), &d),
            0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_PIN);
  EXPECT_EQ(d.reason, "requested");
  EXPECT_EQ(fake.calls().size(), 0u);
}

TEST(ModePolicy, OtherRegistrarsAreNotIbverbs) {
  FakeVerbs fake("mlx5_0");
  fake.SetOdp(FakeVerbs::kRcAll, true);
  regcache_registrar other{};
  ASSERT_EQ(regcache_registrar_fake(0, &other), 0);
  ModeDecision d;
  ASSERT_EQ(
      ResolveMode(other, nullptr, Config(REGCACHE_MODE_AUTO), *fake.ops(), &d),
      0);
  EXPECT_EQ(d.mode, REGCACHE_MODE_PIN);
  EXPECT_EQ(d.reason, std::string("registrar ") + other.name +
                          " is not ibverbs: ODP not applicable");
  EXPECT_EQ(
      ResolveMode(other, nullptr, Config(REGCACHE_MODE_ODP), *fake.ops(), &d),
      -EOPNOTSUPP);
  EXPECT_TRUE(Contains(regcache_last_error(), "is not ibverbs"))
      << regcache_last_error();
  EXPECT_EQ(fake.calls().size(), 0u);
}

TEST(ModePolicy, UnknownModeIsInvalid) {
  FakeVerbs fake("mlx5_0");
  ModeDecision d;
  EXPECT_EQ(ResolveMode(IbverbsOver(fake), fake.pd(), Config(regcache_mode(7)),
                        *fake.ops(), &d),
            -EINVAL);
  EXPECT_TRUE(Contains(regcache_last_error(), "unknown mode 7"))
      << regcache_last_error();
}

// ---------------------------------------------------------------------------
// The ODP registrar

class OdpRegistrarTest : public ::testing::Test {
 protected:
  std::unique_ptr<OdpRegistrar> Make(OdpOptions options = OdpOptions{}) {
    std::unique_ptr<OdpRegistrar> r;
    std::string note;
    EXPECT_EQ(OdpRegistrar::Create(fake_.pd(), Probe(fake_), options,
                                   *fake_.ops(), &r, &note),
              0)
        << note;
    note_ = note;
    return r;
  }
  FakeVerbs fake_{"mlx5_0"};
  std::string note_;
  void* const addr_ = reinterpret_cast<void*>(uintptr_t{0x7f0000100000});
};

TEST_F(OdpRegistrarTest, ExplicitMrsAreOnDemandWithTheMappedAccess) {
  fake_.SetOdp(FakeVerbs::kRcAll, false);
  auto odp = Make();
  const regcache_registrar r = odp->registrar();
  regcache_mr mr;
  ASSERT_EQ(Reg(r, addr_, 4 * kPage, REGCACHE_ACCESS_REMOTE_WRITE, &mr), 0);
  auto regs = fake_.calls(Op::kRegMr);
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].addr, addr_);
  EXPECT_EQ(regs[0].length, 4 * kPage);
  EXPECT_EQ(regs[0].access, IBV_ACCESS_ON_DEMAND | IBV_ACCESS_LOCAL_WRITE |
                                IBV_ACCESS_REMOTE_WRITE);
  EXPECT_EQ(mr.access,
            REGCACHE_ACCESS_LOCAL_WRITE | REGCACHE_ACCESS_REMOTE_WRITE)
      << "widened as verbs requires, and reported";
  EXPECT_EQ(mr.lkey, regs[0].mr->lkey);
  EXPECT_EQ(mr.rkey, regs[0].mr->rkey);
  EXPECT_EQ(mr.backend, regs[0].mr);

  ASSERT_EQ(r.dereg(r.ctx, &mr), 0);
  ASSERT_EQ(fake_.count(Op::kDeregMr), 1u);
  EXPECT_EQ(fake_.live_mrs(), 0u);
  EXPECT_EQ(fake_.bad_deregs(), 0u);
}

TEST_F(OdpRegistrarTest, PrefetchIsWriteForWritableAccessAndAsyncByDefault) {
  fake_.SetOdp(FakeVerbs::kRcAll, false);
  auto odp = Make();
  const regcache_registrar r = odp->registrar();
  regcache_mr writable, readonly;
  ASSERT_EQ(Reg(r, addr_, 2 * kPage, REGCACHE_ACCESS_LOCAL_WRITE, &writable),
            0);
  ASSERT_EQ(Reg(r, addr_, 2 * kPage, REGCACHE_ACCESS_REMOTE_READ, &readonly),
            0);
  auto advises = fake_.calls(Op::kAdviseMr);
  ASSERT_EQ(advises.size(), 2u);
  EXPECT_EQ(advises[0].advice, IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE);
  EXPECT_EQ(advises[0].flags, 0u) << "asynchronous: no FLUSH";
  ASSERT_EQ(advises[0].sges.size(), 1u);
  EXPECT_EQ(advises[0].sges[0].addr, reinterpret_cast<uintptr_t>(addr_));
  EXPECT_EQ(advises[0].sges[0].length, 2 * kPage);
  EXPECT_EQ(advises[0].sges[0].lkey, writable.lkey);
  EXPECT_EQ(advises[1].advice, IBV_ADVISE_MR_ADVICE_PREFETCH);
  EXPECT_EQ(advises[1].sges[0].lkey, readonly.lkey);
  // The prefetch comes after the registration it uses (call 0 is the probe).
  auto all = fake_.calls();
  ASSERT_GE(all.size(), 3u);
  EXPECT_EQ(all[0].op, Op::kQueryDeviceEx);
  EXPECT_EQ(all[1].op, Op::kRegMr);
  EXPECT_EQ(all[2].op, Op::kAdviseMr);
  r.dereg(r.ctx, &writable);
  r.dereg(r.ctx, &readonly);
}

TEST_F(OdpRegistrarTest, SynchronousPrefetchFlushes) {
  fake_.SetOdp(FakeVerbs::kRcAll, false);
  auto odp = Make(OdpOptions{false, OdpPrefetch::kSync});
  const regcache_registrar r = odp->registrar();
  regcache_mr mr;
  ASSERT_EQ(Reg(r, addr_, kPage, REGCACHE_ACCESS_REMOTE_WRITE, &mr), 0);
  auto advises = fake_.calls(Op::kAdviseMr);
  ASSERT_EQ(advises.size(), 1u);
  EXPECT_EQ(advises[0].advice, IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE);
  EXPECT_EQ(advises[0].flags, uint32_t(IBV_ADVISE_MR_FLAG_FLUSH));
  r.dereg(r.ctx, &mr);

  // The public Prefetch() does the same on demand.
  ASSERT_EQ(odp->Prefetch(0x42, 0x1000, kPage, 0, /*sync=*/true), 0);
  advises = fake_.calls(Op::kAdviseMr);
  EXPECT_EQ(advises.back().advice, IBV_ADVISE_MR_ADVICE_PREFETCH);
  EXPECT_EQ(advises.back().flags, uint32_t(IBV_ADVISE_MR_FLAG_FLUSH));
  EXPECT_EQ(advises.back().sges[0].lkey, 0x42u);
}

TEST_F(OdpRegistrarTest, FailedSynchronousPrefetchFailsTheRegistration) {
  fake_.SetOdp(FakeVerbs::kRcAll, false);
  fake_.set_advise_result(EFAULT);
  auto odp = Make(OdpOptions{false, OdpPrefetch::kSync});
  regcache_mr mr;
  EXPECT_EQ(Reg(odp->registrar(), addr_, kPage, 0, &mr), -EFAULT);
  EXPECT_TRUE(Contains(regcache_last_error(), "ibv_advise_mr(PREFETCH, FLUSH)"))
      << regcache_last_error();
  EXPECT_EQ(fake_.count(Op::kDeregMr), 1u) << "the MR is not leaked";
  EXPECT_EQ(fake_.live_mrs(), 0u);
}

TEST_F(OdpRegistrarTest, UnsupportedAsyncPrefetchIsDroppedNotAnError) {
  fake_.SetOdp(FakeVerbs::kRcAll, false);
  fake_.set_advise_result(EOPNOTSUPP);
  auto odp = Make();
  const regcache_registrar r = odp->registrar();
  regcache_mr a, b;
  ASSERT_EQ(Reg(r, addr_, kPage, 0, &a), 0);
  ASSERT_EQ(Reg(r, addr_, kPage, 0, &b), 0);
  EXPECT_EQ(fake_.count(Op::kAdviseMr), 1u) << "advice stops after EOPNOTSUPP";
  EXPECT_EQ(odp->prefetch_errors(), 1u);
  r.dereg(r.ctx, &a);
  r.dereg(r.ctx, &b);
}

TEST_F(OdpRegistrarTest, LongRangesAreAdvisedInChunksThatFitAnSge) {
  fake_.SetOdp(FakeVerbs::kRcAll, false);
  auto odp = Make();
  const uint64_t length = (uint64_t{5} << 30) + kPage;  // nothing is touched
  ASSERT_EQ(odp->Prefetch(7, 0x10000000, length, 0, false), 0);
  uint64_t next = 0x10000000, total = 0;
  for (const auto& call : fake_.calls(Op::kAdviseMr)) {
    for (const ibv_sge& sge : call.sges) {
      EXPECT_EQ(sge.addr, next);
      EXPECT_GT(sge.length, 0u);
      next += sge.length;
      total += sge.length;
    }
  }
  EXPECT_EQ(total, length);
}

TEST_F(OdpRegistrarTest, AtomicsWithoutRcAtomicOdpAreRefusedNotPinned) {
  fake_.SetOdp(kRcSendRecvWriteRead, false);
  auto odp = Make();
  regcache_mr mr;
  EXPECT_EQ(
      Reg(odp->registrar(), addr_, kPage, REGCACHE_ACCESS_REMOTE_ATOMIC, &mr),
      -EOPNOTSUPP);
  const std::string msg = regcache_last_error();
  EXPECT_TRUE(Contains(msg, "lacks atomic")) << msg;
  EXPECT_TRUE(Contains(msg, "REGCACHE_MODE=pin")) << msg;
  EXPECT_EQ(fake_.count(Op::kRegMr), 0u)
      << "no pinned fallback: no monitor would "
         "invalidate it";
}

TEST_F(OdpRegistrarTest, ImplicitMrIsRegisteredOnceAndServesEveryRequest) {
  fake_.SetOdp(FakeVerbs::kRcAll, /*implicit=*/true);
  auto odp = Make(OdpOptions{true, OdpPrefetch::kAsync});
  ASSERT_TRUE(odp->implicit_mode()) << note_;
  auto regs = fake_.calls(Op::kRegMr);
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].addr, nullptr);
  EXPECT_EQ(regs[0].length, SIZE_MAX);
  EXPECT_EQ(regs[0].access, IBV_ACCESS_ON_DEMAND | IBV_ACCESS_LOCAL_WRITE |
                                IBV_ACCESS_REMOTE_WRITE |
                                IBV_ACCESS_REMOTE_READ |
                                IBV_ACCESS_REMOTE_ATOMIC);
  const regcache_registrar r = odp->registrar();
  regcache_mr a, b;
  ASSERT_EQ(Reg(r, addr_, kPage, REGCACHE_ACCESS_REMOTE_READ, &a), 0);
  ASSERT_EQ(Reg(r, static_cast<char*>(addr_) + 64 * kPage, 8 * kPage,
                REGCACHE_ACCESS_REMOTE_ATOMIC, &b),
            0);
  EXPECT_EQ(fake_.count(Op::kRegMr), 1u) << "no registration per request";
  EXPECT_EQ(a.lkey, regs[0].mr->lkey);
  EXPECT_EQ(a.rkey, regs[0].mr->rkey);
  EXPECT_EQ(b.lkey, regs[0].mr->lkey);
  EXPECT_EQ(a.access, uint32_t(REGCACHE_ACCESS_ALL));
  // Each request's range is still prefetched, through the implicit lkey.
  auto advises = fake_.calls(Op::kAdviseMr);
  ASSERT_EQ(advises.size(), 2u);
  EXPECT_EQ(advises[1].sges[0].addr,
            reinterpret_cast<uintptr_t>(addr_) + 64 * kPage);
  EXPECT_EQ(advises[1].sges[0].lkey, regs[0].mr->lkey);
  // dereg of a request does nothing; the registrar's end deregisters the MR.
  ASSERT_EQ(r.dereg(r.ctx, &a), 0);
  ASSERT_EQ(r.dereg(r.ctx, &b), 0);
  EXPECT_EQ(fake_.count(Op::kDeregMr), 0u);
  odp.reset();
  EXPECT_EQ(fake_.count(Op::kDeregMr), 1u);
  EXPECT_EQ(fake_.live_mrs(), 0u);
}

TEST_F(OdpRegistrarTest, ImplicitMrCarriesOnlyTheCoveredRights) {
  fake_.SetOdp(kRcSendRecvWriteRead, /*implicit=*/true);
  auto odp = Make(OdpOptions{true, OdpPrefetch::kNone});
  ASSERT_TRUE(odp->implicit_mode());
  EXPECT_EQ(fake_.calls(Op::kRegMr)[0].access,
            IBV_ACCESS_ON_DEMAND | IBV_ACCESS_LOCAL_WRITE |
                IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
  regcache_mr mr;
  EXPECT_EQ(
      Reg(odp->registrar(), addr_, kPage, REGCACHE_ACCESS_REMOTE_ATOMIC, &mr),
      -EOPNOTSUPP);
  EXPECT_EQ(fake_.count(Op::kAdviseMr), 0u) << "prefetch off";
}

TEST_F(OdpRegistrarTest, ImplicitFallsBackToExplicitAndSaysWhy) {
  fake_.SetOdp(FakeVerbs::kRcAll, /*implicit=*/false);
  auto odp = Make(OdpOptions{true, OdpPrefetch::kNone});
  EXPECT_FALSE(odp->implicit_mode());
  EXPECT_TRUE(Contains(note_, "no implicit ODP")) << note_;

  fake_.SetOdp(FakeVerbs::kRcAll, /*implicit=*/true);
  fake_.set_reg_errno(EINVAL);
  auto refused = Make(OdpOptions{true, OdpPrefetch::kNone});
  EXPECT_FALSE(refused->implicit_mode());
  EXPECT_TRUE(Contains(note_, "implicit ODP MR refused")) << note_;
  fake_.set_reg_errno(0);
  regcache_mr mr;
  ASSERT_EQ(Reg(refused->registrar(), addr_, kPage, 0, &mr), 0);
  EXPECT_EQ(fake_.calls(Op::kRegMr).back().addr, addr_) << "explicit MR";
  refused->registrar().dereg(refused.get(), &mr);
}

// ---------------------------------------------------------------------------
// Through the cache (regcache_create picks the mode; FakeVerbs substituted)

class OdpCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    buffer_ =
        static_cast<char*>(mmap(nullptr, 8 * kPage, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(buffer_, MAP_FAILED);
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      EXPECT_EQ(regcache_destroy(cache_), 0);
    }
    EXPECT_EQ(fake_.live_mrs(), 0u) << "an MR leaked";
    EXPECT_EQ(fake_.bad_deregs(), 0u);
    munmap(buffer_, 8 * kPage);
  }
  std::string PrintedStats() {
    char* text = nullptr;
    size_t size = 0;
    FILE* f = open_memstream(&text, &size);
    EXPECT_EQ(regcache_print_stats(cache_, f), 0);
    fclose(f);
    std::string out(text, size);
    free(text);
    return out;
  }

  FakeVerbs fake_{"mlx5_0"};
  ScopedVerbsOpsForTesting use_fake_{fake_.ops()};
  regcache_t* cache_ = nullptr;
  char* buffer_ = nullptr;
};

TEST_F(OdpCacheTest, AutoWithOdpUsesNoMonitorAndShowsTheMode) {
  fake_.SetOdp(kRcSendRecvWriteRead, false);
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_AUTO);
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_ODP);
  EXPECT_EQ(s.monitor, REGCACHE_MONITOR_NONE);
  EXPECT_STREQ(s.mode_reason,
               "mlx5_0 supports ODP for RC send/recv/write/read; explicit MRs");
  const std::string printed = PrintedStats();
  EXPECT_TRUE(
      Contains(printed,
               "mode=odp (mlx5_0 supports ODP for RC send/recv/write/read; "
               "explicit MRs), monitor=none"))
      << printed;
}

TEST_F(OdpCacheTest, AutoOnRxeOdpPinsAndSaysWhy) {
  fake_.set_vendor(kRxeVendorId, kRxeVendorPartId);
  fake_.SetOdp(kRxeRcOdp, false);
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_NONE);
  testing::internal::CaptureStderr();
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_PIN);
  EXPECT_TRUE(Contains(s.mode_reason, "known defect rxe-odp-page-offset"))
      << s.mode_reason;
  // (The pinned registrar calls libibverbs itself, which FakeVerbs is not:
  // the cache is not asked to register here.)
  EXPECT_EQ(fake_.count(Op::kRegMr), 0u);
}

TEST_F(OdpCacheTest, ForcedOdpOnRxeWarnsAndNamesTheSetAsideMonitor) {
  fake_.set_vendor(kRxeVendorId, kRxeVendorPartId);
  fake_.SetOdp(kRxeRcOdp, false);
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_ODP, REGCACHE_MONITOR_KMOD);
  testing::internal::CaptureStderr();
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  const std::string err = testing::internal::GetCapturedStderr();
  // (The fixture's fake device is called mlx5_0; the vendor makes it rxe.)
  EXPECT_TRUE(
      Contains(err,
               "regcache: warning: mode odp (requested) on mlx5_0, whose "
               "ODP has a known defect (rxe-odp-page-offset)"))
      << err;
  EXPECT_TRUE(Contains(err, "monitor kmod requested, but mode odp uses none"))
      << err;
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_ODP);
  EXPECT_EQ(s.monitor, REGCACHE_MONITOR_NONE);
  EXPECT_STREQ(
      s.monitor_reason,
      "none, not the requested kmod: ODP registrations never go stale");
  const std::string printed = PrintedStats();
  EXPECT_TRUE(Contains(printed, "monitor=none (none, not the requested kmod"))
      << printed;
}

TEST_F(OdpCacheTest, OdpRegistrationSurvivesMunmapAndRemap) {
  fake_.SetOdp(kRcSendRecvWriteRead, false);
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_ODP, REGCACHE_MONITOR_AUTO);
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, buffer_, 4 * kPage, kRw, &h), 0)
      << regcache_last_error();
  const uint32_t rkey = regcache_handle_mr(h)->rkey;
  auto regs = fake_.calls(Op::kRegMr);
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].access & IBV_ACCESS_ON_DEMAND, IBV_ACCESS_ON_DEMAND);
  ASSERT_EQ(regcache_put(cache_, h), 0);

  // New memory at the same address: the ODP MR reaches it, so the cached
  // registration is still right and is returned without registering again.
  ASSERT_EQ(munmap(buffer_, 4 * kPage), 0);
  void* again = mmap(buffer_, 4 * kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(again, buffer_);
  ASSERT_EQ(regcache_get(cache_, buffer_, 4 * kPage, kRw, &h), 0);
  EXPECT_EQ(regcache_handle_mr(h)->rkey, rkey);
  EXPECT_EQ(fake_.count(Op::kRegMr), 1u);
  ASSERT_EQ(regcache_put(cache_, h), 0);
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.hits + s.misses, 2u);
  EXPECT_EQ(s.misses, 1u);
}

TEST_F(OdpCacheTest, ConfigFlagsChooseImplicitMrAndPrefetch) {
  struct Case {
    uint32_t flags;
    bool implicit;        // one implicit MR, made at create
    int advises_per_get;  // ibv_advise_mr calls per miss
    uint32_t advise_flags;
  } cases[] = {
      {0, false, 1, 0},
      {REGCACHE_CONFIG_ODP_PREFETCH_SYNC, false, 1, IBV_ADVISE_MR_FLAG_FLUSH},
      {REGCACHE_CONFIG_ODP_NO_PREFETCH, false, 0, 0},
      {REGCACHE_CONFIG_ODP_IMPLICIT | REGCACHE_CONFIG_ODP_PREFETCH_SYNC, true,
       1, IBV_ADVISE_MR_FLAG_FLUSH},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("flags " + std::to_string(c.flags));
    fake_.ClearCalls();
    fake_.SetOdp(FakeVerbs::kRcAll, /*implicit=*/true);
    const regcache_registrar r = IbverbsOver(fake_);
    regcache_config cfg = Config(REGCACHE_MODE_ODP);
    cfg.flags = c.flags;
    ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
    struct regcache_stats s;
    ASSERT_EQ(regcache_stats(cache_, &s), 0);
    EXPECT_EQ(Contains(s.mode_reason, "implicit MR"), c.implicit)
        << s.mode_reason;
    const size_t regs_at_create = fake_.count(Op::kRegMr);
    EXPECT_EQ(regs_at_create, c.implicit ? 1u : 0u);
    regcache_handle_t* h = nullptr;
    ASSERT_EQ(regcache_get(cache_, buffer_, 2 * kPage, kRw, &h), 0)
        << regcache_last_error();
    ASSERT_EQ(regcache_put(cache_, h), 0);
    EXPECT_EQ(fake_.count(Op::kRegMr), c.implicit ? 1u : 1u + regs_at_create);
    const auto advises = fake_.calls(Op::kAdviseMr);
    ASSERT_EQ(advises.size(), size_t(c.advises_per_get));
    if (!advises.empty()) {
      EXPECT_EQ(advises[0].flags, c.advise_flags);
    }
    ASSERT_EQ(regcache_destroy(cache_), 0);
    cache_ = nullptr;
  }
}

TEST(RegcacheOdpEnv, ImplicitAndPrefetchSetTheFlags) {
  {
    ScopedEnv implicit("REGCACHE_ODP_IMPLICIT", "1");
    ScopedEnv prefetch("REGCACHE_ODP_PREFETCH", "sync");
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0);
    EXPECT_EQ(cfg.flags,
              REGCACHE_CONFIG_ODP_IMPLICIT | REGCACHE_CONFIG_ODP_PREFETCH_SYNC);
  }
  {
    ScopedEnv prefetch("REGCACHE_ODP_PREFETCH", "none");
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0);
    EXPECT_EQ(cfg.flags, REGCACHE_CONFIG_ODP_NO_PREFETCH);
  }
  for (const char* bad : {"yes", ""}) {
    ScopedEnv implicit("REGCACHE_ODP_IMPLICIT", bad);
    regcache_config cfg;
    EXPECT_EQ(regcache_config_init(&cfg), -EINVAL) << bad;
    EXPECT_TRUE(Contains(regcache_last_error(), "REGCACHE_ODP_IMPLICIT"))
        << regcache_last_error();
  }
  ScopedEnv prefetch("REGCACHE_ODP_PREFETCH", "flush");
  regcache_config cfg;
  EXPECT_EQ(regcache_config_init(&cfg), -EINVAL);
  EXPECT_TRUE(Contains(regcache_last_error(), "async, sync or none"))
      << regcache_last_error();
}

TEST_F(OdpCacheTest, ByteLimitDoesNotEvictOdpRegistrations) {
  // max_bytes bounds pinned memory (its default is RLIMIT_MEMLOCK); ODP MRs
  // pin nothing, so only max_entries evicts them.
  fake_.SetOdp(kRcSendRecvWriteRead, false);
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_ODP);
  cfg.max_bytes = kPage;
  cfg.max_entries = 3;
  // CLOCK evicts the fourth newcomer's victim (the adaptive admission
  // would serve a one-shot newcomer uncached instead).
  cfg.admission = REGCACHE_ADMISSION_ALWAYS;
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  for (int i = 0; i < 3; ++i) {
    regcache_handle_t* h = nullptr;
    ASSERT_EQ(regcache_get(cache_, buffer_ + 2 * i * kPage, kPage, kRw, &h), 0)
        << regcache_last_error();
    ASSERT_EQ(regcache_put(cache_, h), 0);
  }
  EXPECT_EQ(fake_.count(Op::kDeregMr), 0u) << "evicted for max_bytes";
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.entries_now, 3u);
  EXPECT_EQ(s.evictions, 0u);
  // The entry limit still applies.
  regcache_handle_t* h = nullptr;
  ASSERT_EQ(regcache_get(cache_, buffer_ + 7 * kPage, kPage, kRw, &h), 0);
  ASSERT_EQ(regcache_put(cache_, h), 0);
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.evictions, 1u);
}

TEST_F(OdpCacheTest, AtomicGetOnDeviceWithoutRcAtomicOdpFails) {
  fake_.SetOdp(kRcSendRecvWriteRead, false);
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_AUTO);
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  regcache_handle_t* h = nullptr;
  EXPECT_EQ(
      regcache_get(cache_, buffer_, kPage, REGCACHE_ACCESS_REMOTE_ATOMIC, &h),
      -EOPNOTSUPP);
  EXPECT_TRUE(Contains(regcache_last_error(), "ibverbs-odp"))
      << regcache_last_error();
  EXPECT_EQ(fake_.count(Op::kRegMr), 0u);
}

TEST_F(OdpCacheTest, AutoWithoutOdpPinsAndShowsWhy) {
  fake_.SetNoOdp();
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_NONE);
  ASSERT_EQ(regcache_create(&r, &cfg, &cache_), 0) << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_PIN);
  EXPECT_STREQ(s.mode_reason,
               "mlx5_0: no on-demand paging (odp_caps.general_caps = 0)");
  const std::string printed = PrintedStats();
  EXPECT_TRUE(Contains(printed,
                       "mode=pin (mlx5_0: no on-demand paging "
                       "(odp_caps.general_caps = 0)), monitor=none"))
      << printed;
  // (No get: the pin registrar would call the real ibv_reg_mr on a fake pd.)
}

TEST_F(OdpCacheTest, OdpRequestedWithoutOdpFailsCreate) {
  fake_.SetNoOdp();
  const regcache_registrar r = IbverbsOver(fake_);
  regcache_config cfg = Config(REGCACHE_MODE_ODP);
  EXPECT_EQ(regcache_create(&r, &cfg, &cache_), -EOPNOTSUPP);
  EXPECT_EQ(cache_, nullptr);
  EXPECT_TRUE(Contains(regcache_last_error(), "no on-demand paging"))
      << regcache_last_error();
}

TEST_F(OdpCacheTest, OtherRegistrarsStayPinned) {
  regcache_registrar other{};
  ASSERT_EQ(regcache_registrar_fake(0, &other), 0);
  regcache_config cfg = Config(REGCACHE_MODE_AUTO);
  ASSERT_EQ(regcache_create(&other, &cfg, &cache_), 0) << regcache_last_error();
  struct regcache_stats s;
  ASSERT_EQ(regcache_stats(cache_, &s), 0);
  EXPECT_EQ(s.mode, REGCACHE_MODE_PIN);
  EXPECT_TRUE(Contains(s.mode_reason, "is not ibverbs: ODP not applicable"))
      << s.mode_reason;
  EXPECT_EQ(fake_.calls().size(), 0u);
}

TEST_F(OdpCacheTest, ImplicitMrServesEveryGetWithoutRegistering) {
  fake_.SetOdp(FakeVerbs::kRcAll, /*implicit=*/true);
  ModeDecision d;
  ASSERT_EQ(
      ResolveMode(IbverbsOver(fake_), fake_.pd(), Config(REGCACHE_MODE_AUTO),
                  *fake_.ops(), &d, OdpOptions{true, OdpPrefetch::kAsync}),
      0);
  ASSERT_EQ(d.mode, REGCACHE_MODE_ODP);
  EXPECT_TRUE(Contains(d.reason, "implicit MR")) << d.reason;
  ASSERT_EQ(fake_.count(Op::kRegMr), 1u);
  const ibv_mr* implicit = fake_.calls(Op::kRegMr)[0].mr;
  // A cache over the decision's registrar (which is not "ibverbs", so the
  // cache's own policy leaves it alone).
  regcache_config cfg = Config(REGCACHE_MODE_AUTO, REGCACHE_MONITOR_NONE);
  ASSERT_EQ(regcache_create(&d.registrar, &cfg, &cache_), 0)
      << regcache_last_error();
  for (int i = 0; i < 4; ++i) {
    regcache_handle_t* h = nullptr;
    ASSERT_EQ(regcache_get(cache_, buffer_ + i * kPage, kPage, kRw, &h), 0);
    EXPECT_EQ(regcache_handle_mr(h)->lkey, implicit->lkey);
    EXPECT_EQ(regcache_handle_mr(h)->rkey, implicit->rkey);
    ASSERT_EQ(regcache_put(cache_, h), 0);
  }
  EXPECT_EQ(fake_.count(Op::kRegMr), 1u);
  ASSERT_EQ(regcache_destroy(cache_), 0);
  cache_ = nullptr;
  EXPECT_EQ(fake_.count(Op::kDeregMr), 0u)
      << "the implicit MR outlives the entries";
  d.odp.reset();
  EXPECT_EQ(fake_.count(Op::kDeregMr), 1u);
}

// ---------------------------------------------------------------------------
// REGCACHE_MODE

TEST(RegcacheModeEnv, DefaultIsAuto) {
  ScopedEnv env("REGCACHE_MODE", nullptr);
  regcache_config cfg;
  ASSERT_EQ(regcache_config_init(&cfg), 0);
  EXPECT_EQ(cfg.mode, REGCACHE_MODE_AUTO);
}

TEST(RegcacheModeEnv, ParsesEachMode) {
  const struct {
    const char* value;
    regcache_mode mode;
  } cases[] = {{"auto", REGCACHE_MODE_AUTO},
               {"pin", REGCACHE_MODE_PIN},
               {"odp", REGCACHE_MODE_ODP}};
  for (const auto& c : cases) {
    ScopedEnv env("REGCACHE_MODE", c.value);
    regcache_config cfg;
    ASSERT_EQ(regcache_config_init(&cfg), 0) << c.value;
    EXPECT_EQ(cfg.mode, c.mode) << c.value;
    EXPECT_STREQ(regcache_mode_name(cfg.mode), c.value);
  }
}

TEST(RegcacheModeEnv, BadValueIsInvalidAndNamesTheVariable) {
  for (const char* bad : {"ODP", "pinned", "", "odp "}) {
    ScopedEnv env("REGCACHE_MODE", bad);
    regcache_config cfg;
    EXPECT_EQ(regcache_config_init(&cfg), -EINVAL) << '"' << bad << '"';
    const std::string msg = regcache_last_error();
    EXPECT_TRUE(Contains(msg, std::string("REGCACHE_MODE=\"") + bad + "\""))
        << msg;
    EXPECT_TRUE(Contains(msg, "expected auto, odp or pin")) << msg;
    EXPECT_EQ(cfg.mode, REGCACHE_MODE_AUTO) << "the default stays";
  }
}

}  // namespace
