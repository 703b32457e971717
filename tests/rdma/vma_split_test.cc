// SPDX-License-Identifier: BSD-2-Clause
// A registration that splits its own VMA. libibverbs' fork protection
// (ibv_fork_init(), RDMAV_FORK_SAFE=1, on kernels without copy-on-fork for
// pinned pages) calls madvise(MADV_DONTFORK) on a range before registering
// it, and some MPI libraries do the same themselves. The madvise splits the
// VMA at the range's ends, and Linux tells every mmu notifier that the 2 MiB
// around each split point changed (MMU_NOTIFY_CLEAR from __split_huge_pmd),
// even where nothing is huge. The kernel module hears it, so the range the
// cache has just started to watch goes stale during the registration that
// split it; deregistering the raced registration (MADV_DOFORK) merges the
// VMA again, so a retry would split it again, for ever. The cache must
// still cache such a range: its retry keeps the raced registration, and so
// the split, until the next one is made.
//
// The registrar here is the real ibverbs one behind a wrapper that does
// what libibverbs' fork protection does around it: DONTFORK before the
// registration, DOFORK after the deregistration (this rig's kernels have
// copy-on-fork, so ibv_fork_init() itself does nothing on them).
#include <errno.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <infiniband/verbs.h>

#include "gtest/gtest.h"
#include "loopback_rc.h"
#include "rdma_test_util.h"
#include "regcache/ibverbs.h"
#include "regcache/regcache.h"

namespace regcache_rdma_test {
namespace {

constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kRegion = 3 * kHuge;
constexpr size_t kLength = 64 * 1024;
constexpr uint32_t kSeed = 0xF0F0;

// madvise() over the pages of [addr, addr + length).
int AdvisePages(const void* addr, size_t length, int advice) {
  const uintptr_t first = Addr(addr) & ~uintptr_t{Page() - 1};
  const uintptr_t end =
      (Addr(addr) + length + Page() - 1) & ~uintptr_t{Page() - 1};
  return madvise(reinterpret_cast<void*>(first), end - first, advice);
}

// The ibverbs registrar with libibverbs' fork protection around it:
// DONTFORK when a range gets its first registration, DOFORK when its last
// goes (libibverbs counts per page; every registration here is of the same
// range, so a count per range is the same thing).
struct Dontfork {
  regcache_registrar inner{};
  std::mutex mu;
  std::map<std::pair<uintptr_t, size_t>, int> count;
};
int DontforkReg(void* ctx, void* addr, size_t length, uint32_t access,
                regcache_mr* out) {
  auto* d = static_cast<Dontfork*>(ctx);
  {
    std::lock_guard<std::mutex> l(d->mu);
    if (d->count[{Addr(addr), length}]++ == 0 &&
        AdvisePages(addr, length, MADV_DONTFORK) != 0) {
      --d->count[{Addr(addr), length}];
      return -errno;
    }
  }
  const int rc = d->inner.reg(d->inner.ctx, addr, length, access, out);
  if (rc != 0) {
    std::lock_guard<std::mutex> l(d->mu);
    if (--d->count[{Addr(addr), length}] == 0)
      AdvisePages(addr, length, MADV_DOFORK);
  }
  return rc;
}
int DontforkDereg(void* ctx, regcache_mr* mr) {
  auto* d = static_cast<Dontfork*>(ctx);
  const uintptr_t addr = Addr(mr->addr);
  const size_t length = mr->length;
  const int rc = d->inner.dereg(d->inner.ctx, mr);
  std::lock_guard<std::mutex> l(d->mu);
  // The range may be unmapped by now; DOFORK then fails, as in libibverbs.
  if (--d->count[{addr, length}] == 0)
    AdvisePages(reinterpret_cast<void*>(addr), length, MADV_DOFORK);
  return rc;
}

class VmaSplit : public ::testing::TestWithParam<regcache_monitor_kind> {
 protected:
  void SetUp() override {
    REGCACHE_OPEN_LOOPBACK_OR_SKIP(rc_);
    ASSERT_EQ(regcache_registrar_ibverbs(rc_->pd(), &dontfork_.inner), 0)
        << regcache_last_error();
    registrar_ = regcache_registrar{"ibverbs+dontfork", DontforkReg,
                                    DontforkDereg, &dontfork_};
    regcache_config config;
    ASSERT_EQ(regcache_config_init(&config), 0) << regcache_last_error();
    config.monitor = GetParam();
    config.max_bytes = 0;
    const int err = regcache_create(&registrar_, &config, &cache_);
    if (err == -ENODEV) GTEST_SKIP() << regcache_last_error();
    ASSERT_EQ(err, 0) << regcache_last_error();
    ASSERT_EQ(source_.Init(rc_->pd(), kLength), "");
    FillPattern(source_.data(), kLength, kSeed);
    // One anonymous VMA of 6 MiB, 2 MiB aligned, so that both ends of a
    // registration inside it split the VMA within a huge-page-sized,
    // huge-page-aligned stretch of it.
    region_ = static_cast<char*>(mmap(nullptr, kRegion + kHuge,
                                      PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(region_, MAP_FAILED) << strerror(errno);
    mapped_ = kRegion + kHuge;
    const uintptr_t aligned =
        (Addr(region_) + kHuge - 1) & ~static_cast<uintptr_t>(kHuge - 1);
    buffer_ = reinterpret_cast<char*>(aligned) + kHuge + 5 * Page();
    memset(reinterpret_cast<char*>(aligned), 0, kRegion);
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
    }
    source_.Release();
    if (region_ != nullptr && region_ != MAP_FAILED) munmap(region_, mapped_);
    if (rc_ != nullptr) {
      EXPECT_EQ(rc_->Close(), "");
    }
  }

  std::unique_ptr<LoopbackRc> rc_;
  Dontfork dontfork_;
  regcache_registrar registrar_{};
  regcache_t* cache_ = nullptr;
  DirectBuffer source_;
  char* region_ = nullptr;
  size_t mapped_ = 0;
  char* buffer_ = nullptr;
};

TEST_P(VmaSplit, ARegistrationThatSplitsItsVmaIsCachedAndCarriesData) {
  const char* monitor = MonitorName(GetParam());
  regcache_handle_t* h = nullptr;
  int err = regcache_get(cache_, buffer_, kLength, kRemoteAccess, &h);
  ASSERT_EQ(err, 0) << "[" << monitor << "] " << regcache_last_error();
  const regcache_mr* mr = regcache_handle_mr(h);
  std::string error;
  ASSERT_EQ(rc_->Write(source_.data(), kLength, source_.lkey(), Addr(buffer_),
                       mr->rkey, &error),
            IBV_WC_SUCCESS)
      << error;
  EXPECT_EQ(MismatchAt(buffer_, kLength, kSeed), -1)
      << "[" << monitor << "] the RDMA WRITE did not land in the buffer";
  ASSERT_EQ(regcache_put(cache_, h), 0) << regcache_last_error();

  // Cached: the next get is a hit on the same registration.
  regcache_handle_t* again = nullptr;
  ASSERT_EQ(regcache_get(cache_, buffer_, kLength, kRemoteAccess, &again), 0)
      << regcache_last_error();
  EXPECT_EQ(regcache_handle_mr(again)->rkey, mr->rkey);
  ASSERT_EQ(regcache_put(cache_, again), 0) << regcache_last_error();
  const struct regcache_stats s = StatsOf(cache_);
  EXPECT_EQ(s.hits, 1u) << "[" << monitor << "] " << InvalidationsText(s);
  EXPECT_EQ(s.entries_now, 1u);
  printf(
      "[%s] DONTFORK around each registration: registrations %llu, "
      "deregistrations %llu, "
      "hits %llu, %s\n",
      monitor, static_cast<unsigned long long>(s.registrations),
      static_cast<unsigned long long>(s.deregistrations),
      static_cast<unsigned long long>(s.hits), InvalidationsText(s).c_str());

  // And the protection still holds: unmapped, the range is dropped.
  ASSERT_EQ(munmap(buffer_, kLength), 0);
  const struct regcache_stats after = WaitForStats(
      cache_, 5.0,
      [](const struct regcache_stats& st) { return st.entries_now == 0; });
  EXPECT_EQ(after.entries_now, 0u) << InvalidationsText(after);
}

INSTANTIATE_TEST_SUITE_P(Monitors, VmaSplit,
                         ::testing::Values(REGCACHE_MONITOR_KMOD,
                                           REGCACHE_MONITOR_UFFD),
                         [](const auto& info) {
                           return std::string(MonitorName(info.param));
                         });

}  // namespace
}  // namespace regcache_rdma_test
