// SPDX-License-Identifier: BSD-2-Clause
// The stale-registration hazard, end to end: real RDMA WRITEs (rxe in the
// VM) through registrations handed out by the cache (ibverbs registrar).
//
// A buffer is registered through the cache and released; its memory is then
// replaced under the same virtual address (munmap + mmap, madvise(DONTNEED)
// + touch, mremap away + mmap). The next get of that address is used as the
// target of an RDMA WRITE. With a monitor (kmod, uffd) the cache must
// register the new pages, and the data must appear in the new mapping. The
// control, with no monitor, shows the hazard is real: the cache hands back
// the old registration and the write lands in the old, still pinned pages
// (read back through the same rkey), while the new mapping stays zero.
// KmodSlowPath pins a cache-core bug these tests found (see there).
//
// Needs an RDMA device; skips without one (run in the VM: ctest -L vm).
#include <errno.h>
#include <sys/mman.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "loopback_rc.h"
#include "rdma_test_util.h"
#include "regcache/regcache.h"

namespace regcache_rdma_test {
namespace {

constexpr size_t kLength = 64 * 1024;
constexpr uint8_t kOldByte = 0x11;  // what the first mapping holds
constexpr uint32_t kSeed = 0xC0FFEE;

class HazardBase : public ::testing::Test {
 protected:
  void Start(regcache_monitor_kind monitor) {
    monitor_ = monitor;
    REGCACHE_OPEN_LOOPBACK_OR_SKIP(rc_);
    const int err =
        CreateIbverbsCache(rc_->pd(), monitor, &registrar_, &cache_);
    if (err == -ENODEV) GTEST_SKIP() << regcache_last_error();
    ASSERT_EQ(err, 0) << regcache_last_error();
    ASSERT_EQ(source_.Init(rc_->pd(), kLength), "");
    ASSERT_EQ(scratch_.Init(rc_->pd(), kLength), "");
    FillPattern(source_.data(), kLength, kSeed);
  }
  void TearDown() override {
    if (cache_ != nullptr) {
      EXPECT_EQ(regcache_destroy(cache_), 0) << regcache_last_error();
    }
    source_.Release();
    scratch_.Release();
    if (rc_ != nullptr) {
      EXPECT_EQ(rc_->Close(), "");
    }
  }

  // A get for RDMA WRITE; nullptr (with a test failure) on error.
  regcache_handle_t* Get(const void* p, size_t length) {
    regcache_handle_t* h = nullptr;
    const int err = regcache_get(cache_, p, length, kRemoteAccess, &h);
    EXPECT_EQ(err, 0) << regcache_last_error();
    return err == 0 ? h : nullptr;
  }
  void Put(regcache_handle_t* h) {
    EXPECT_EQ(regcache_put(cache_, h), 0) << regcache_last_error();
  }
  // Puts a handle when the scope ends, also when an ASSERT returns early.
  struct PutAtExit {
    regcache_t* cache;
    regcache_handle_t* handle;
    ~PutAtExit() {
      if (handle != nullptr) {
        EXPECT_EQ(regcache_put(cache, handle), 0) << regcache_last_error();
      }
    }
  };
  static uint32_t RkeyOf(const regcache_handle_t* h) {
    return regcache_handle_mr(h)->rkey;
  }

  // The first mapping: kOldByte everywhere, registered through the cache
  // and released again (cached, unused). Returns its rkey.
  uint32_t MapAndCache(char** out) {
    char* b = MapAnon(kLength);
    EXPECT_NE(b, nullptr);
    if (b == nullptr) return 0;
    memset(b, kOldByte, kLength);
    regcache_handle_t* h = Get(b, kLength);
    if (h == nullptr) return 0;
    const uint32_t rkey = RkeyOf(h);
    Put(h);
    *out = b;
    return rkey;
  }

  // RDMA WRITE of the source pattern to `target` through the handle's rkey.
  void WriteThrough(const regcache_handle_t* h, void* target) {
    std::string error;
    const int status = rc_->Write(source_.data(), kLength, source_.lkey(),
                                  Addr(target), RkeyOf(h), &error);
    ASSERT_EQ(status, IBV_WC_SUCCESS) << error;
  }

  // RDMA READ of what the pages behind `rkey` hold into scratch_.
  void ReadThrough(uint32_t rkey, const void* remote) {
    memset(scratch_.data(), 0, kLength);
    std::string error;
    const int status = rc_->Read(scratch_.data(), kLength, scratch_.lkey(),
                                 Addr(remote), rkey, &error);
    ASSERT_EQ(status, IBV_WC_SUCCESS) << error;
  }

  // Asserts the next get of `b` registers anew and the write lands in the
  // new memory at `b`.
  void ExpectFreshRegistrationReceivesTheWrite(char* b, uint32_t old_rkey,
                                               const char* what) {
    const struct regcache_stats before = StatsOf(cache_);
    regcache_handle_t* h = Get(b, kLength);
    ASSERT_NE(h, nullptr);
    PutAtExit put{cache_, h};
    const struct regcache_stats after = StatsOf(cache_);
    EXPECT_EQ(after.registrations, before.registrations + 1)
        << what << ": the cache did not register the new memory exactly once";
    EXPECT_EQ(after.hits, before.hits) << what << ": served from the cache";
    // Each test's cache sees exactly one change before this get.
    EXPECT_GE(TotalInvalidations(after), 1u)
        << what << ": no invalidation counted by the time the get returned";
    EXPECT_NE(RkeyOf(h), old_rkey) << what << ": the old registration's rkey";
    WriteThrough(h, b);
    const long bad = MismatchAt(b, kLength, kSeed);
    EXPECT_EQ(bad, -1) << what << ": the RDMA WRITE did not arrive in the new "
                       << "memory (first wrong byte at offset " << bad << ")";
    printf(
        "[%s] %s: registrations %llu, rkey %s -> %s, invalidations: %s; "
        "RDMA WRITE %s the new mapping\n",
        MonitorName(monitor_), what,
        static_cast<unsigned long long>(after.registrations),
        Hex(old_rkey).c_str(), Hex(RkeyOf(h)).c_str(),
        InvalidationsText(after).c_str(), bad == -1 ? "arrived in" : "MISSED");
    fflush(stdout);
  }

  // The control's verdict: the get was a hit on the old registration, the
  // write through it succeeded, the memory now at `b` stayed as it was
  // (`unchanged_byte`), and the old pages (read back through the rkey) hold
  // the data.
  void AssertWriteWentToTheOldPages(char* b, uint32_t old_rkey,
                                    uint8_t unchanged_byte) {
    const struct regcache_stats before = StatsOf(cache_);
    regcache_handle_t* h = Get(b, kLength);
    ASSERT_NE(h, nullptr);
    PutAtExit put{cache_, h};
    const struct regcache_stats after = StatsOf(cache_);
    ASSERT_EQ(after.hits, before.hits + 1)
        << "without a monitor the cache should have returned its entry";
    ASSERT_EQ(after.registrations, before.registrations);
    ASSERT_EQ(RkeyOf(h), old_rkey);
    WriteThrough(h, b);
    ASSERT_EQ(FirstNotEqual(b, kLength, unchanged_byte), -1)
        << "the memory now at the address changed: the hazard did not happen";
    ReadThrough(old_rkey, b);
    ASSERT_EQ(MismatchAt(scratch_.data(), kLength, kSeed), -1)
        << "the old pages (read through the stale rkey) lack the data";
  }

  // The three ways the tests change the memory under a cached
  // registration of [b, b + kLength). Call with ASSERT_NO_FATAL_FAILURE.

  // munmap(), then new pages mapped at the same address.
  static void UnmapAndMapAgain(char* b) {
    ASSERT_EQ(munmap(b, kLength), 0);
    ASSERT_EQ(MapAnon(kLength, b, MAP_FIXED_NOREPLACE), b)
        << "could not map again at the same address";
  }
  // madvise(DONTNEED), then a write fault gives each page a new zero page.
  static void DropAndTouch(char* b) {
    ASSERT_EQ(madvise(b, kLength, MADV_DONTNEED), 0);
    for (size_t off = 0; off < kLength; off += Page()) b[off] = 0;
  }
  // mremap() the pages to *away (mapped here), then new pages at b.
  static void MoveAwayAndMapAgain(char* b, char** away) {
    *away = MapAnon(kLength);
    ASSERT_NE(*away, nullptr);
    ASSERT_EQ(mremap(b, kLength, kLength, MREMAP_MAYMOVE | MREMAP_FIXED, *away),
              *away);
    ASSERT_EQ(MapAnon(kLength, b, MAP_FIXED_NOREPLACE), b);
  }

  regcache_monitor_kind monitor_ = REGCACHE_MONITOR_NONE;
  std::unique_ptr<LoopbackRc> rc_;
  regcache_registrar registrar_{};
  regcache_t* cache_ = nullptr;
  DirectBuffer source_;
  DirectBuffer scratch_;
};

// ------------------------------------------------------------ with monitor

class HazardWithMonitor
    : public HazardBase,
      public ::testing::WithParamInterface<regcache_monitor_kind> {
 protected:
  void SetUp() override { Start(GetParam()); }
};

TEST_P(HazardWithMonitor, MunmapThenMmapAtTheSameAddressGetsTheWrite) {
  char* b = nullptr;
  const uint32_t old_rkey = MapAndCache(&b);
  ASSERT_NE(b, nullptr);
  ASSERT_NO_FATAL_FAILURE(UnmapAndMapAgain(b));
  ExpectFreshRegistrationReceivesTheWrite(b, old_rkey, "munmap + mmap");
  EXPECT_GE(StatsOf(cache_).invalidations[REGCACHE_INVAL_UNMAP], 1u);
  munmap(b, kLength);
}

TEST_P(HazardWithMonitor, MadviseDontneedThenTouchGetsTheWrite) {
  char* b = nullptr;
  const uint32_t old_rkey = MapAndCache(&b);
  ASSERT_NE(b, nullptr);
  ASSERT_NO_FATAL_FAILURE(DropAndTouch(b));
  ASSERT_EQ(FirstNotEqual(b, kLength, 0), -1);
  ExpectFreshRegistrationReceivesTheWrite(b, old_rkey,
                                          "madvise(DONTNEED) + touch");
  EXPECT_GE(StatsOf(cache_).invalidations[REGCACHE_INVAL_REMOVE], 1u);
  munmap(b, kLength);
}

TEST_P(HazardWithMonitor, MremapAwayThenMmapGetsTheWriteAndTheOldPagesDoNot) {
  char* b = nullptr;
  const uint32_t old_rkey = MapAndCache(&b);
  ASSERT_NE(b, nullptr);
  char* away = nullptr;
  ASSERT_NO_FATAL_FAILURE(MoveAwayAndMapAgain(b, &away));
  ExpectFreshRegistrationReceivesTheWrite(b, old_rkey, "mremap away + mmap");
  EXPECT_EQ(FirstNotEqual(away, kLength, kOldByte), -1)
      << "the moved old pages were written";
  munmap(b, kLength);
  munmap(away, kLength);
}

std::string MonitorParamName(
    const ::testing::TestParamInfo<regcache_monitor_kind>& info) {
  return MonitorName(info.param);
}

INSTANTIATE_TEST_SUITE_P(Monitors, HazardWithMonitor,
                         ::testing::Values(REGCACHE_MONITOR_KMOD,
                                           REGCACHE_MONITOR_UFFD),
                         MonitorParamName);

// ------------------------------------------------- control: no monitor

class Hazard : public HazardBase {
 protected:
  void SetUp() override { Start(REGCACHE_MONITOR_NONE); }
};

TEST_F(Hazard, WithoutMonitorTheWriteLandsInTheOldPages) {
  char* b = nullptr;
  const uint32_t old_rkey = MapAndCache(&b);
  ASSERT_NE(b, nullptr);
  ASSERT_NO_FATAL_FAILURE(UnmapAndMapAgain(b));
  AssertWriteWentToTheOldPages(b, old_rkey, 0);
  printf("(device %s)\n", rc_->Describe().c_str());
  printf(
      "CONTROL (no monitor): stale registration reused, RDMA write went to "
      "the old pages: new mapping unchanged\n");
  fflush(stdout);

  // What a monitor-less user must do: invalidate explicitly.
  ASSERT_EQ(regcache_invalidate(cache_, b, kLength), 0);
  ExpectFreshRegistrationReceivesTheWrite(b, old_rkey,
                                          "after regcache_invalidate()");
  munmap(b, kLength);
}

TEST_F(Hazard, WithoutMonitorDontneedLeavesTheWriteInTheOldPages) {
  char* b = nullptr;
  const uint32_t old_rkey = MapAndCache(&b);
  ASSERT_NE(b, nullptr);
  ASSERT_NO_FATAL_FAILURE(DropAndTouch(b));
  AssertWriteWentToTheOldPages(b, old_rkey, 0);
  printf(
      "CONTROL (no monitor): after madvise(DONTNEED) + touch the stale "
      "registration was reused; the write went to the dropped pages\n");
  fflush(stdout);
  ASSERT_EQ(regcache_invalidate(cache_, b, kLength), 0);
  munmap(b, kLength);
}

TEST_F(Hazard, WithoutMonitorMremapAwayTheWriteFollowsTheOldPages) {
  char* b = nullptr;
  const uint32_t old_rkey = MapAndCache(&b);
  ASSERT_NE(b, nullptr);
  char* away = nullptr;
  ASSERT_NO_FATAL_FAILURE(MoveAwayAndMapAgain(b, &away));
  AssertWriteWentToTheOldPages(b, old_rkey, 0);
  // Here the old pages are still mapped, at their new address: the data is
  // visible there directly.
  ASSERT_EQ(MismatchAt(away, kLength, kSeed), -1)
      << "the write did not land in the pages moved away";
  printf(
      "CONTROL (no monitor): after mremap the stale registration was "
      "reused; the write landed at the pages' new address %p, not at %p\n",
      static_cast<void*>(away), static_cast<void*>(b));
  fflush(stdout);
  ASSERT_EQ(regcache_invalidate(cache_, b, kLength), 0);
  munmap(b, kLength);
  munmap(away, kLength);
}

// ------------------------------------------------------------ regression
//
// Pins a bug these tests found in the cache core:
// with the kmod monitor, Cache::GetSlow() called Monitor::WaitForPending()
// only when kGateEventsPending was set, which kmod never sets. After
// munmap()/madvise() the next get refused the stale entry on its generation
// word but left it in the tree and registered the range again; the event
// thread's report then arrived late and InvalidateRange() dropped the NEW
// registration too (or the miss discarded it as raced). Never stale, but
// the invalidation was not counted when the get returned and one
// ibv_reg_mr per invalidation was wasted (seen in 4 to 8 of 20 rounds).
class KmodSlowPath : public HazardBase {
 protected:
  void SetUp() override { Start(REGCACHE_MONITOR_KMOD); }
};

TEST_F(KmodSlowPath,
       StaleEntryIsDroppedAndCountedBeforeTheRangeIsRegisteredAgain) {
  constexpr int kRounds = 20;
  char* b = MapAnon(kLength);
  ASSERT_NE(b, nullptr);
  Put(Get(b, kLength));
  int not_counted = 0, wasted = 0;
  for (int round = 0; round < kRounds; ++round) {
    const struct regcache_stats before = StatsOf(cache_);
    ASSERT_EQ(madvise(b, kLength, MADV_DONTNEED), 0);
    for (size_t off = 0; off < kLength; off += Page()) b[off] = 0;
    regcache_handle_t* h = Get(b, kLength);
    ASSERT_NE(h, nullptr);
    const struct regcache_stats got = StatsOf(cache_);
    if (TotalInvalidations(got) == TotalInvalidations(before)) ++not_counted;
    Put(h);
    // Let the event thread deliver whatever it still has.
    WaitForStats(cache_, 5, [&](const struct regcache_stats& s) {
      return TotalInvalidations(s) > TotalInvalidations(before);
    });
    usleep(20000);
    Put(Get(b, kLength));  // must be a hit on the registration made above
    const struct regcache_stats after = StatsOf(cache_);
    if (after.registrations != before.registrations + 1) ++wasted;
  }
  EXPECT_EQ(not_counted, 0) << "the stale entry was not dropped and counted "
                               "before the range was registered again";
  EXPECT_EQ(wasted, 0) << "the late event killed (or raced) the new "
                          "registration, so the range was registered again";
  munmap(b, kLength);
}

}  // namespace
}  // namespace regcache_rdma_test
